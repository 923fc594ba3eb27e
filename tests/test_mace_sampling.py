"""Any torch-sim model samples in phasetune's batched sampler: a tiny MACE built in the test."""

import numpy as np
import pytest
import torch

mace_modules = pytest.importorskip("mace.modules")
from e3nn import o3  # noqa: E402
from torch_sim.models.mace import MaceModel  # noqa: E402

from phasetune.potentials.base import frame_energies  # noqa: E402
from phasetune.sampling.sampler import SamplerSettings, StatePoint, sample_state_points  # noqa: E402
from phasetune.structures import build_structure  # noqa: E402


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
        production_steps=8,
        stride=4,
        check_phase=False,
        progress=False,
    )
    frames, _ = sample_state_points(model, points, settings)
    assert frames.n_frames == 2 and frames.n_systems == 2
    assert bool(torch.isfinite(frames.potential_energy).all())
    # the stored energies are the model's energies of the stored frames
    torch.testing.assert_close(
        frame_energies(model, frames).detach(), frames.potential_energy, rtol=0, atol=1e-10
    )
