"""Phase-identity check: crystals at finite temperature, real liquids, flagged transitions."""

import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.neighborlist import neighbor_list

from phasetune.sampling.local_order import local_order, real_spherical_harmonics
from phasetune.sampling.phase_check import PHASES, check_phase, classify_atoms, phase_fractions

SIGMA_AR = 3.405  # Å, Lennard-Jones argon


def _batch(frames: list[Atoms], dtype=torch.float64):
    positions = torch.tensor(np.concatenate([a.positions for a in frames]), dtype=dtype)
    cell = torch.tensor(np.stack([a.cell.array for a in frames]), dtype=dtype)
    system_idx = torch.cat([torch.full((len(a),), k) for k, a in enumerate(frames)])
    return positions, cell, system_idx


def _rattled(atoms: Atoms, lindemann: float, seed: int) -> Atoms:
    """Independent Gaussian displacements with 3-D rms = ``lindemann`` × nearest-neighbour d."""
    d_nn = neighbor_list("d", atoms, 1.2 * (atoms.get_volume() / len(atoms)) ** (1 / 3)).min()
    out = atoms.copy()
    sigma = lindemann * d_nn / math.sqrt(3.0)
    out.positions += np.random.default_rng(seed).normal(0.0, sigma, out.positions.shape)
    return out


# Argon-like (nearest neighbour ≈ 3.7 Å) and titanium-like (≈ 2.9 Å) crystals, primitive
# (triclinic) and conventional cells, 96–200 atoms.
CRYSTALS = [
    ("fcc", bulk("Ar", "fcc", a=5.26, cubic=True).repeat(3)),
    ("fcc", bulk("Ti", "fcc", a=4.10).repeat(5)),
    ("hcp", bulk("Ti", "hcp", a=2.95, c=4.68).repeat((5, 5, 4))),
    ("hcp", bulk("Ti", "hcp", a=2.95, c=4.68, orthorhombic=True).repeat((4, 2, 3))),
    ("hcp", bulk("Ar", "hcp", a=3.76, c=6.14).repeat((4, 4, 3))),
    ("bcc", bulk("Ti", "bcc", a=3.28, cubic=True).repeat(4)),
    ("bcc", bulk("Ar", "bcc", a=4.20).repeat(5)),
]


# ----------------------------------------------------------------------- a real LJ liquid


def _lj_forces(x: torch.Tensor, box: float, cutoff: float = 2.5) -> torch.Tensor:
    d = x[None, :, :] - x[:, None, :]  # d[i, j] = x_j - x_i
    d = d - box * torch.round(d / box)
    r2 = (d * d).sum(-1)
    r2.fill_diagonal_(math.inf)
    inv6 = torch.where(r2 < cutoff**2, r2.reciprocal() ** 3, torch.zeros_like(r2))
    return -((24.0 * inv6 * (2.0 * inv6 - 1.0) / r2)[..., None] * d).sum(1)


def _melt_lennard_jones(seed: int = 0) -> Atoms:
    """Lennard-Jones fluid by MD (reduced units, ρσ³ = 0.85) from a 256-atom fcc start.

    Melted at kT/ε = 2.5 for 3 τ, then equilibrated at kT/ε = 0.9 for 1.5 τ (a dense liquid
    near freezing), velocity Verlet with a weak velocity-rescaling thermostat; returned
    scaled to argon (σ = 3.405 Å). This direct O(N²) MD takes ~1 s; torch-sim's
    Lennard-Jones model costs 30–100 ms per step on two CPU threads, too slow for a unit test.
    """
    gen = torch.Generator().manual_seed(seed)
    density, dt = 0.85, 0.005
    crystal = bulk("Ar", "fcc", a=(4 / density) ** (1 / 3), cubic=True).repeat(4)
    x = torch.tensor(crystal.positions)
    box = float(crystal.cell[0, 0])
    v = torch.randn(x.shape, generator=gen, dtype=x.dtype) * math.sqrt(2.5)
    f = _lj_forces(x, box)
    for step in range(900):
        target = 2.5 if step < 600 else 0.9
        v = v + 0.5 * dt * f
        x = x + dt * v
        f = _lj_forces(x, box)
        v = v + 0.5 * dt * f
        temperature = float((v * v).sum()) / (3 * len(x) - 3)
        v = v * math.sqrt(1.0 + 0.1 * (target / temperature - 1.0))
    liquid = Atoms("Ar256", positions=x.numpy(), cell=crystal.cell, pbc=True)
    liquid.wrap()
    liquid.set_cell(liquid.cell * SIGMA_AR, scale_atoms=True)
    return liquid


@pytest.fixture(scope="module")
def liquid() -> Atoms:
    return _melt_lennard_jones()


def _half_melted(liquid: Atoms) -> Atoms:
    """Liquid atoms with fractional z < 1/2 and fcc layers (same density) above them."""
    a = liquid.cell[0, 0] / 4
    crystal = bulk("Ar", "fcc", a=a, cubic=True).repeat(4)
    crystal.positions += [0.0, 0.0, a / 4]  # layers at z = (k + 1/2)/8: no atom on the seams
    lower = liquid.positions[liquid.get_scaled_positions()[:, 2] < 0.5]
    upper = crystal.positions[crystal.get_scaled_positions()[:, 2] >= 0.5]
    positions = np.concatenate([lower, upper])
    return Atoms(f"Ar{len(positions)}", positions=positions, cell=liquid.cell, pbc=True)


def _scaled(atoms: Atoms, factor: float) -> Atoms:
    out = atoms.copy()
    out.set_cell(out.cell * factor, scale_atoms=True)
    return out


# ------------------------------------------------------------------------------ tests


def test_spherical_harmonics_are_orthonormal_and_match_closed_forms():
    # Fibonacci sphere quadrature of ∫ Y_a Y_b dΩ = δ_ab
    n = 20000
    k = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1.0 - 2.0 * k / n
    phi = math.pi * (1.0 + math.sqrt(5.0)) * k
    rho = torch.sqrt(1.0 - z**2)
    u = torch.stack([rho * torch.cos(phi), rho * torch.sin(phi), z], dim=-1)
    for l in (4, 6):
        y = real_spherical_harmonics(l, u)
        gram = 4.0 * math.pi / n * y.T @ y
        torch.testing.assert_close(gram, torch.eye(2 * l + 1, dtype=gram.dtype), atol=1e-3, rtol=0)
        torch.testing.assert_close(
            (y**2).sum(-1), torch.full((n,), (2 * l + 1) / (4 * math.pi), dtype=torch.float64)
        )
    y40 = 3.0 / (16.0 * math.sqrt(math.pi)) * (35 * z**4 - 30 * z**2 + 3)
    torch.testing.assert_close(real_spherical_harmonics(4, u)[:, 0], y40)
    # |Y_66| = (1/64) sqrt(3003/π) sin^6 θ; real pair (cos, sin) carries sqrt(2)|Y_66|
    y66 = real_spherical_harmonics(6, u)[:, -2:]
    expected = math.sqrt(2.0) / 64.0 * math.sqrt(3003.0 / math.pi) * rho**6
    torch.testing.assert_close(y66.norm(dim=-1), expected)


def test_spherical_harmonics_equal_e3nns_up_to_an_orthogonal_change_of_basis():
    """e3nn's real harmonics (mace's dependency, imported as phasetune imports mace) and
    phasetune's are the same orthonormal basis up to a rotation of the m components, so the
    rotational invariants the classifier uses (Σ_m q_lm², q̂_l(i)·q̂_l(j)) are equal."""
    from phasetune.third_party import mace_import

    with mace_import():
        from e3nn import o3
    generator = torch.Generator().manual_seed(0)
    u = torch.nn.functional.normalize(
        torch.randn(5000, 3, generator=generator, dtype=torch.float64), dim=-1
    )
    for l in (4, 6):
        ours = real_spherical_harmonics(l, u)
        theirs = o3.spherical_harmonics(l, u, normalize=False, normalization="integral")
        rotation = torch.linalg.lstsq(theirs, ours).solution
        eye = torch.eye(2 * l + 1, dtype=torch.float64)
        torch.testing.assert_close(rotation.T @ rotation, eye, atol=1e-10, rtol=0)
        torch.testing.assert_close(theirs @ rotation, ours, atol=1e-10, rtol=0)
        # the invariants: Σ_m Y(a) Y(b) for pairs of directions
        torch.testing.assert_close(
            (ours[:-1] * ours[1:]).sum(-1), (theirs[:-1] * theirs[1:]).sum(-1), atol=1e-12, rtol=0
        )


def test_ideal_crystals_reproduce_literature_order_parameters():
    frames = [
        bulk("Cu", "fcc", a=3.6, cubic=True).repeat(3),
        bulk("Mg", "hcp", a=3.2, c=3.2 * math.sqrt(8 / 3)).repeat((4, 4, 3)),
        bulk("Fe", "bcc", a=2.87, cubic=True).repeat(4),
    ]
    order = local_order(*_batch(frames))
    system_idx = _batch(frames)[2]
    # Steinhardt values; bcc with both shells (8 + 6), which SANN selects
    reference = {0: (12, 0.19094, 0.57452), 1: (12, 0.09722, 0.48476), 2: (14, 0.03637, 0.51069)}
    for s, (n_nb, q4, q6) in reference.items():
        sel = system_idx == s
        assert (order.n_neighbours[sel] == n_nb).all()
        for value, ref in ((order.q4, q4), (order.q4_bar, q4), (order.q6, q6), (order.q6_bar, q6)):
            assert torch.allclose(value[sel], torch.tensor(ref, dtype=value.dtype), atol=2e-5)
        assert (order.solid_bonds[sel] == n_nb).all()


@pytest.mark.parametrize("lindemann", [0.0, 0.08, 0.10])
def test_crystals_at_finite_temperature_keep_their_structure(lindemann):
    frames = [_rattled(a, lindemann, seed=k) for k, (_, a) in enumerate(CRYSTALS)]
    expected = [phase for phase, _ in CRYSTALS]
    fractions = phase_fractions(*_batch(frames))
    assert fractions.shape == (len(CRYSTALS), len(PHASES))
    torch.testing.assert_close(fractions.sum(1), torch.ones(len(CRYSTALS), dtype=fractions.dtype))
    for s, phase in enumerate(expected):
        assert fractions[s, PHASES.index(phase)] >= 0.9, (s, phase, fractions[s])
    result = check_phase(*_batch(frames), expected)
    assert result.ok.all(), result.describe()
    assert result.dominant == expected


def test_md_liquid_is_liquid_at_any_scale(liquid):
    # argon scale and a titanium-like scale (nearest neighbours ≈ 3.3 Å and 2.6 Å)
    frames = [liquid, _scaled(liquid, 0.8)]
    fractions = phase_fractions(*_batch(frames))
    assert (fractions[:, PHASES.index("liquid")] >= 0.95).all(), fractions
    result = check_phase(*_batch(frames), ["liquid", "liquid"])
    assert result.ok.all()
    assert result.dominant == ["liquid", "liquid"]


def test_check_phase_flags_melting_transformation_and_crystallisation(liquid):
    fcc = _rattled(bulk("Ar", "fcc", a=5.26, cubic=True).repeat(4), 0.09, seed=10)
    hcp = _rattled(bulk("Ti", "hcp", a=2.95, c=4.68, orthorhombic=True).repeat((4, 3, 3)), 0.09, 11)
    bcc = _rattled(bulk("Ti", "bcc", a=3.28, cubic=True).repeat(4), 0.09, seed=12)
    cases = [
        (liquid, "fcc", False),  # a solid that melted
        (fcc, "bcc", False),  # a solid that transformed into another
        (hcp, "fcc", False),  # likewise, between close-packed structures
        (hcp, "liquid", False),  # a liquid that crystallised
        (fcc, "fcc", True),  # intact frames
        (hcp, "hcp", True),
        (bcc, "bcc", True),
        (liquid, "liquid", True),
    ]
    frames, expected, want = zip(*cases, strict=True)
    result = check_phase(*_batch(list(frames)), list(expected))
    assert result.ok.tolist() == list(want), result.describe()
    assert result.failed == [0, 1, 2, 3]
    assert result.dominant == ["liquid", "fcc", "hcp", "hcp", "fcc", "hcp", "bcc", "liquid"]
    lines = result.describe()
    assert len(lines) == len(cases)
    assert lines[0].startswith("system 0: expected fcc, found 100% liquid")
    assert lines[1].startswith("system 1: expected bcc, found 100% fcc")
    assert lines[3].startswith("system 3: expected liquid, found 100% hcp")
    assert lines[4] == "system 4: fcc ok (100% fcc)"
    assert result.describe(failures_only=True) == lines[:4]


def test_half_melted_box_is_half_liquid_and_flagged(liquid):
    box = _half_melted(liquid)
    positions, cell, system_idx = _batch([box])
    labels = classify_atoms(positions, cell, system_idx)
    fractions = phase_fractions(positions, cell, system_idx)[0]
    solid_like = 1.0 - fractions[PHASES.index("liquid")]
    assert 0.4 <= fractions[PHASES.index("liquid")] <= 0.6, fractions
    assert 0.4 <= fractions[PHASES.index("fcc")] <= 0.6, fractions
    assert 0.4 <= solid_like <= 0.6, fractions
    # the liquid sits in the lower half, the crystal in the upper one (away from the seams)
    z = torch.tensor(box.get_scaled_positions()[:, 2])
    crystal_bulk = (z > 0.6) & (z < 0.9)
    liquid_bulk = (z > 0.1) & (z < 0.4)
    assert (labels[crystal_bulk] == PHASES.index("fcc")).all()
    assert (labels[liquid_bulk] == PHASES.index("liquid")).float().mean() >= 0.95
    assert not check_phase(positions, cell, system_idx, ["liquid"]).ok.any()
    assert not check_phase(positions, cell, system_idx, "fcc", min_fraction=0.8).ok.any()


def test_labels_invariant_to_scale_rotation_and_dtype(liquid):
    frames = [_rattled(a, 0.09, seed=20 + k) for k, (_, a) in enumerate(CRYSTALS)] + [liquid]
    positions, cell, system_idx = _batch(frames)
    reference = classify_atoms(positions, cell, system_idx)
    order = local_order(positions, cell, system_idx)

    scaled = classify_atoms(1.3 * positions, 1.3 * cell, system_idx)
    assert torch.equal(scaled, reference)

    rotation, _ = torch.linalg.qr(
        torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    )
    rotation = rotation * torch.linalg.det(rotation).sign()  # proper rotation
    rotated = local_order(positions @ rotation.T, cell @ rotation.T, system_idx)
    torch.testing.assert_close(rotated.q6_bar, order.q6_bar)
    torch.testing.assert_close(rotated.q4_bar, order.q4_bar)
    assert torch.equal(
        classify_atoms(positions @ rotation.T, cell @ rotation.T, system_idx), reference
    )

    single = local_order(positions.float(), cell.float(), system_idx)
    assert single.q6_bar.dtype == torch.float32
    torch.testing.assert_close(single.q6_bar.double(), order.q6_bar, atol=1e-5, rtol=0)
    assert torch.equal(classify_atoms(positions.float(), cell.float(), system_idx), reference)
    fractions = phase_fractions(positions.float(), cell.float(), system_idx)
    assert fractions.dtype == torch.float32


def test_runs_without_gradients_and_ignores_atom_order():
    frames = [_rattled(a, 0.08, seed=30 + k) for k, (_, a) in enumerate(CRYSTALS[:3])]
    positions, cell, system_idx = _batch(frames)
    reference = classify_atoms(positions, cell, system_idx)
    # interleaved systems: atoms of different systems need not be contiguous
    perm = torch.randperm(len(positions), generator=torch.Generator().manual_seed(0))
    leaf = positions[perm].clone().requires_grad_(True)
    with torch.no_grad():
        labels = classify_atoms(leaf, cell, system_idx[perm])
    assert torch.equal(labels, reference[perm])
    result = check_phase(leaf, cell, system_idx[perm], "fcc")  # grad mode on: still no graph
    assert not result.fractions.requires_grad
    assert result.ok.tolist() == [True, True, False]


def test_search_backends_agree_and_tiny_cells_work(liquid):
    frames = [_rattled(a, 0.09, seed=40 + k) for k, (_, a) in enumerate(CRYSTALS)] + [liquid]
    batch = _batch(frames)
    by_vesin = local_order(*batch, neighbour_search="vesin")
    by_dense = local_order(*batch, neighbour_search="dense")
    assert torch.equal(by_vesin.n_neighbours, by_dense.n_neighbours)
    torch.testing.assert_close(by_vesin.q6_bar, by_dense.q6_bar)
    torch.testing.assert_close(by_vesin.q4_bar, by_dense.q4_bar)
    # unit cells of 1–4 atoms: every neighbour is a periodic image
    tiny = [
        bulk("Cu", "fcc", a=3.6, cubic=True),
        bulk("Fe", "bcc", a=2.87),
        bulk("Ti", "hcp", a=2.95, c=4.68),
        bulk("Ti", "hcp", a=2.95, c=4.68, orthorhombic=True),
    ]
    for search in ("vesin", "dense"):
        result = check_phase(*_batch(tiny), ["fcc", "bcc", "hcp", "hcp"], neighbour_search=search)
        assert result.ok.all(), result.describe()
    with pytest.raises(ValueError, match="neighbour_search"):
        local_order(*batch, neighbour_search="kdtree")


def test_input_validation():
    positions, cell, system_idx = _batch([bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2)])
    with pytest.raises(ValueError, match="fcc, hcp, bcc, liquid"):
        check_phase(positions, cell, system_idx, ["diamond"])
    with pytest.raises(ValueError, match="1 systems"):
        check_phase(positions, cell, system_idx, ["fcc", "bcc"])
    with pytest.raises(ValueError, match="positions"):
        check_phase(positions[:, :2], cell, system_idx, ["fcc"])
    with pytest.raises(ValueError, match="cell"):
        check_phase(positions, cell[:, :2], system_idx, ["fcc"])
    with pytest.raises(ValueError, match="system_idx"):
        check_phase(positions, cell, system_idx[:-1], ["fcc"])
    with pytest.raises(ValueError, match="system_idx"):
        check_phase(positions, cell, system_idx + 1, ["fcc"])
    with pytest.raises(ValueError, match="no atoms"):
        check_phase(positions, torch.cat([cell, cell]), system_idx, ["fcc", "fcc"])
    with pytest.raises(ValueError, match="fractions"):
        check_phase(positions, cell, system_idx, ["fcc"], min_fraction=1.5)
    # a single name applies to every system; names are case-insensitive
    assert check_phase(positions, cell, system_idx, "FCC").ok.all()
