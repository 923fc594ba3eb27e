"""What the Ti1 Frenkel–Ladd study scripts share: the pair configs' crystals at 1155 K, the
``preset=quick`` NPT run, and a batch of replicas on Einstein springs (as
:func:`phasetune.free_energy.solid.solid_free_energy` sets them up)."""

from __future__ import annotations

import torch
import torch_sim as ts
from ase import Atoms

from phasetune.free_energy.einstein import EinsteinCrystal, spring_constant_from_msd
from phasetune.free_energy.solid import average_lattice
from phasetune.free_energy.switching import LambdaPath
from phasetune.sampling.frames import Frames
from phasetune.sampling.sampler import SamplerSettings, StatePoint, sample_state_points
from phasetune.structures import build_structure

TEMPERATURE_K, TIMESTEP_FS = 1155.0, 3.0
#: the lattices of conf/pair/hcp_bcc.yaml
LATTICES = {"hcp": dict(lattice_A=2.95, c_over_a=1.587), "bcc": dict(lattice_A=3.31)}


def crystal(phase: str, n_atoms: int) -> Atoms:
    return build_structure(phase, element="Ti", n_atoms=n_atoms, **LATTICES[phase])


def npt_frames(
    model, atoms: Atoms, phase: str, *, seed: int, equilibration=500, production=1000, stride=20
) -> Frames:
    """NPT frames at 1155 K, 0 GPa: ``preset=quick``'s Frenkel–Ladd run by default."""
    frames, _ = sample_state_points(
        model,
        [StatePoint(name="npt", phase=phase, atoms=atoms, temperature_K=TEMPERATURE_K)],
        SamplerSettings(
            timestep_fs=TIMESTEP_FS,
            equilibration_steps=equilibration,
            production_steps=production,
            stride=stride,
            compressibility_per_GPa=0.02,
            thermostat="langevin",
            seed=seed,
            progress=False,
        ),
    )
    return frames


def sites_and_spring(frames: Frames, atoms: Atoms) -> tuple[Atoms, float]:
    """The average lattice of the frames and k = 3k_BT/⟨u²⟩."""
    sites, msd = average_lattice(frames, 0, atoms)
    return sites, spring_constant_from_msd(msd_A2=msd, temperature_K=TEMPERATURE_K)


def switching_batch(model, sites: Atoms, spring: float, replicas: int):
    """``replicas`` copies of ``sites`` and the U → U_E path with the centre of mass fixed."""
    state = ts.io.atoms_to_state([sites] * replicas, device="cpu", dtype=torch.float64)
    path = LambdaPath(
        model, EinsteinCrystal(sites=state.positions, spring_eV_A2=spring), fix_center_of_mass=True
    )
    return state, path
