"""Estimated systematic errors of free-energy transition temperatures."""

import numpy as np
import pytest

from phasetune.free_energy.harmonic import lennard_jones_fcc_finite_size_correction
from phasetune.free_energy.systematics import (
    dissipation_systematic_eV,
    extrapolate_to_bulk,
    extrapolation_systematic_eV,
    finite_size_systematic_eV,
)
from phasetune.units import KB_EV_PER_K


def test_box_size_error_of_a_pair_cancels_with_matched_sizes():
    kT = KB_EV_PER_K * 1155.0
    kw = dict(temperature_K=1155.0, kB_eV_per_K=KB_EV_PER_K)
    matched = finite_size_systematic_eV([(250, 0.0), (250, 0.0)], **kw)
    assert matched == pytest.approx(kT / 250)  # only the structure spread is left
    # hcp 240 / bcc 250, as in the Ti1 run of bench/RESULTS.md (0.56 meV/atom)
    assert finite_size_systematic_eV([(240, 0.0), (250, 0.0)], **kw) == pytest.approx(
        5.64e-4, rel=1e-2
    )
    # the 96/128 boxes: 9 k_BT (1/96 - 1/128) + k_BT/96, ≈ 3.7 meV/atom
    assert finite_size_systematic_eV([(96, 0.0), (128, 0.0)], **kw) > 3e-3
    # a lone crystal (solid|liquid) carries its whole error, ≈ 9 k_BT / N
    assert finite_size_systematic_eV([(250, 0.0)], **kw) == pytest.approx(9 * kT / 250)


def test_corrected_crystals_keep_a_quarter_of_their_correction():
    kw = dict(temperature_K=1155.0, kB_eV_per_K=KB_EV_PER_K)
    both = finite_size_systematic_eV([(240, -3.9e-3), (250, -3.5e-3)], **kw)
    assert both == pytest.approx(0.25 * (3.9e-3**2 + 3.5e-3**2) ** 0.5)
    # one corrected and one not counts as uncorrected (that is how the pair is measured)
    assert finite_size_systematic_eV([(240, -3.9e-3), (250, 0.0)], **kw) == pytest.approx(
        finite_size_systematic_eV([(240, 0.0), (250, 0.0)], **kw)
    )


#: Ti1 bcc at 1155 K (bench/RESULTS.md): G(short) − G(long) switching, its error, and the
#: dissipation per atom at the short and the long switching, all meV/atom
MEASURED_BCC_SHIFTS = [
    (-0.54, 0.57, 5.26, 1.80),  # 128 atoms, 3 → 12 ps, 16 replicas, same sites
    (+0.95, 0.51, 4.89, 0.65),  # 250 atoms, 4.5 → 36 ps, 12 replicas, same sites
    (+0.60, 0.26, 1.12, 0.66),  # 250 atoms, 18 → 36 ps, 4 replicas
    (+0.37, 0.17, 0.97, 0.50),  # 432 atoms, 18 → 36 ps, 4 replicas
]


def test_dissipation_bias_estimate_covers_the_measured_switching_length_shifts():
    """With the bias b·W_d, G(short) − G(long) = b (W_d,short − W_d,long). The estimate's b
    lies 2σ above the measurements' pooled b (σ scaled by √(χ²/dof), as they scatter more
    than their errors), and no measured shift exceeds what the estimate predicts by 2σ."""
    shift, error, short, long = np.array(MEASURED_BCC_SHIFTS).T
    b, b_error = shift / (short - long), error / (short - long)
    weights = 1 / b_error**2
    pooled = float(np.sum(weights * b) / np.sum(weights))
    chi2 = float(np.sum(weights * (b - pooled) ** 2)) / (len(b) - 1)
    pooled_error = float(np.sqrt(max(chi2, 1.0) / np.sum(weights)))
    estimate = dissipation_systematic_eV(1e-3) / 1e-3  # b of the estimate
    assert estimate >= pooled + 2 * pooled_error, (pooled, pooled_error)
    assert estimate <= 1.0  # the bias of a symmetric estimator stays below W_d
    assert np.all(shift - estimate * (short - long) < 2 * error)
    assert dissipation_systematic_eV(-1e-4) == pytest.approx(estimate * 1e-4)  # noise below 0


def test_extrapolation_to_bulk_is_exact_for_one_over_n_and_its_error_is_the_spread():
    bulk, c = -5.8066, 0.95  # eV/atom, eV: y(N) = y∞ − c/N
    sizes, errors = (240, 448), (1.8e-4, 1.2e-4)
    exact, error = extrapolate_to_bulk(sizes, [bulk - c / n for n in sizes], errors)
    assert exact == pytest.approx(bulk, abs=1e-12)
    rng = np.random.default_rng(0)
    noisy = [
        extrapolate_to_bulk(
            sizes,
            [bulk - c / n + rng.normal(0, e) for n, e in zip(sizes, errors, strict=True)],
            errors,
        )[0]
        for _ in range(4000)
    ]
    assert np.std(noisy) == pytest.approx(error, rel=0.05)
    assert error > max(errors)  # extrapolating amplifies: ≈ 3.3e-4 here
    with pytest.raises(ValueError, match="N1 < N2"):
        extrapolate_to_bulk((448, 240), (0.0, 0.0), (0.0, 0.0))


@pytest.mark.parametrize("sizes", [(108, 256), (256, 500), (108, 500)])
def test_extrapolation_remainder_covers_the_lj_lattice_sums_without_hiding_them(sizes):
    """The analytic harmonic finite-size errors of LJ fcc (no simulation), extrapolated
    linearly in 1/N, leave a bulk value ≠ 0; the estimate covers it, and not by more than 3×."""
    f = [
        lennard_jones_fcc_finite_size_correction(density=1.28, temperature=2.0, n_atoms=n)
        for n in sizes
    ]
    left, _ = extrapolate_to_bulk(sizes, f, (0.0, 0.0))  # in k_BT: the exact answer is 0
    estimate = extrapolation_systematic_eV([sizes], temperature_K=1.0, kB_eV_per_K=1.0)
    assert abs(left) < estimate < 3 * abs(left)
    # a pair of crystals extrapolated alike cancels most of it
    pair = extrapolation_systematic_eV([sizes, sizes], temperature_K=1.0, kB_eV_per_K=1.0)
    assert pair == pytest.approx(0.3 / 0.75 * estimate)
