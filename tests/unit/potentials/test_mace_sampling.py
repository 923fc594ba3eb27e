"""Any torch-sim model samples in phasetune's batched sampler: a tiny MACE built in the test."""

import numpy as np
import pytest
import torch

mace_modules = pytest.importorskip("mace.modules")
from e3nn import o3  # noqa: E402
from torch_sim.models.mace import MaceModel  # noqa: E402

from phasetune.learn.difftre import (  # noqa: E402
    StatePointEnsemble,
    parameter_snapshot,
    reweighted_gibbs_change,
)
from phasetune.potentials.evaluation import frame_energies  # noqa: E402
from phasetune.potentials.mace import MacePotential  # noqa: E402
from phasetune.sampling.sampler import SamplerSettings, StatePoint, sample_state_points  # noqa: E402
from phasetune.structures import build_structure  # noqa: E402
from phasetune.units import KB_EV_PER_K  # noqa: E402


def tiny_titanium_mace() -> torch.nn.Module:
    torch.manual_seed(0)
    block = mace_modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    return mace_modules.MACE(
        r_max=4.5,
        num_bessel=4,
        num_polynomial_cutoff=5,
        max_ell=1,
        interaction_cls=block,
        interaction_cls_first=block,
        num_interactions=1,
        num_elements=1,
        hidden_irreps=o3.Irreps("8x0e"),
        MLP_irreps=o3.Irreps("8x0e"),
        gate=torch.nn.functional.silu,
        atomic_energies=np.array([-1.0]),
        avg_num_neighbors=12.0,
        atomic_numbers=[22],
        correlation=2,
    ).to(torch.float64)


def test_tiny_mace_samples_in_one_batch_and_reweights_consistently():
    model = MaceModel(tiny_titanium_mace(), device=torch.device("cpu"), dtype=torch.float64)
    points = [
        StatePoint(
            name="bcc",
            phase="bcc",
            atoms=build_structure("bcc", element="Ti", lattice_A=3.3, n_atoms=16),
            temperature_K=1500.0,
            pressure_GPa=0.0,
        ),
        StatePoint(
            name="hcp",
            phase="hcp",
            atoms=build_structure("hcp", element="Ti", lattice_A=2.95, n_atoms=16),
            temperature_K=1000.0,
            pressure_GPa=1.0,
        ),
    ]
    settings = SamplerSettings(
        timestep_fs=1.0,
        equilibration_steps=4,
        production_steps=16,
        stride=2,
        check_phase=False,
        progress=False,
    )
    frames, _ = sample_state_points(model, points, settings)
    assert frames.n_frames == 8 and frames.n_systems == 2
    assert bool(torch.isfinite(frames.potential_energy).all())
    # the stored energies are the model's energies of the stored frames
    torch.testing.assert_close(
        frame_energies(model, frames).detach(), frames.potential_energy, rtol=0, atol=1e-10
    )

    # Reweighting to a model whose energy change is known exactly. This MACE's energy is
    # U = N·E0 + Σ_i w·h_i (one interaction, a linear readout w, E0 = −1 eV): scaling w by
    # (1 + δ) changes every frame's energy by exactly δ·(U − N·E0). The reweighted
    # [G(θ) − G(θ_ref)]/N must be Zwanzig's −(kT/N) ln⟨exp(−ΔU/kT)⟩, and the ESS Kish's
    # (Σw)²/Σw², both written out here in numpy on those ΔU.
    u_ref = frames.potential_energy.double()
    scaled = tiny_titanium_mace()
    delta = 3.0
    with torch.no_grad():
        scaled.readouts[0].linear.weight.mul_(1 + delta)
    # the live model of a reweighting: phasetune's MacePotential, whose forces can be switched
    # off so that the energies keep their graph (torch-sim's MaceModel cannot be switched)
    perturbed = MacePotential(scaled, device="cpu", dtype=torch.float64)
    n_atoms, e0 = 16, -1.0
    expected_du = delta * (u_ref - n_atoms * e0)
    u_new = frame_energies(perturbed, frames).detach()
    torch.testing.assert_close(u_new - u_ref, expected_du, rtol=1e-9, atol=1e-9)
    assert float(expected_du.std(dim=0).min()) > 0.01  # the frames are not all alike
    for k, point in enumerate(points):
        ensemble = StatePointEnsemble(
            name=point.name,
            target="t",
            phase=point.phase,
            temperature_K=point.temperature_K,
            pressure_GPa=point.pressure_GPa,
            frames=frames.select_system(k),
            reference_energy=u_ref[:, k].clone(),
            reference_params=parameter_snapshot(model),
        )
        # the sampling model itself: ΔG = 0 and uniform weights (ESS = N), to rounding: the
        # stored energies come from the sampler's batched pass, the reweighting evaluates
        # one system, and on some CPUs the two differ in the last bit (−2.9e-17 eV/atom seen)
        same = reweighted_gibbs_change(model, ensemble)
        assert abs(float(same.delta_g_eV)) < 1e-14
        assert same.relative_ess == pytest.approx(1.0, abs=1e-12)
        kT = KB_EV_PER_K * point.temperature_K
        du = expected_du[:, k].numpy()
        x = -du / kT
        fep = -kT * (x.max() + np.log(np.mean(np.exp(x - x.max())))) / n_atoms
        w = np.exp(x - x.max())
        kish = w.sum() ** 2 / (w**2).sum() / len(w)
        moved = reweighted_gibbs_change(perturbed, ensemble)
        assert float(moved.delta_g_eV) == pytest.approx(fep, rel=1e-9, abs=1e-12), point.name
        assert moved.relative_ess == pytest.approx(kish, rel=1e-9), point.name
        assert kish < 0.999  # the weights are not uniform: the check has teeth
        # Jensen: ΔG ≤ ⟨ΔU⟩, strictly for frames that differ
        assert fep < du.mean() / n_atoms
