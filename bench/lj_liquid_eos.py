"""NPT Lennard-Jones liquid vs. the NIST benchmark, with longer runs than the test suite.

    python -m bench.lj_liquid_eos --systems 3 --equilibration 2000 --production 3000

State point: T* = 0.85, P* = 0.55355, LJ truncated at 3σ with analytic tail corrections
(NIST Standard Reference Simulation Website, LJ fluid, MC NVT at T* = 0.85: ρ* = 0.82 gives
P* = 0.55355, U*/N = −5.8260). Argon units (ε/k_B = 119.8 K, σ = 3.405 Å), 256 atoms each,
dt = 10 fs. Prints ρ*, ⟨P⟩ with its blocking error per system, and U*/N.
"""

from __future__ import annotations

import argparse

import torch

from phasetune.potentials.base import sampling_copy
from phasetune.potentials.lennard_jones import LennardJones
from phasetune.sampling.sampler import (
    SamplerSettings,
    StatePoint,
    sample_state_points,
)
from phasetune.structures import build_structure
from phasetune.thermo.statistics import standard_error_of_mean
from phasetune.units import EV_PER_A3_PER_GPA, KB_EV_PER_K

EPS_K, SIGMA = 119.8, 3.405


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", type=int, default=3)
    parser.add_argument("--equilibration", type=int, default=2000)
    parser.add_argument("--production", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    eps = EPS_K * KB_EV_PER_K
    temperature = 0.85 * EPS_K
    pressure = 0.55355 * eps / SIGMA**3 / EV_PER_A3_PER_GPA
    lattice = (4 / 0.80) ** (1 / 3) * SIGMA
    points = [
        StatePoint(
            name=f"liquid{k}",
            phase="liquid",
            atoms=build_structure("liquid", element="Ar", lattice_A=lattice, n_atoms=256),
            temperature_K=temperature,
            pressure_GPa=pressure,
        )
        for k in range(args.systems)
    ]
    settings = SamplerSettings(
        timestep_fs=10.0,
        equilibration_steps=args.equilibration,
        production_steps=args.production,
        stride=10,
        melt_steps=300,
        melt_temperature_factor=1.6,
        compressibility_per_GPa=1.0,
        progress=False,
    )
    model = LennardJones(
        epsilon_eV=eps, sigma_A=SIGMA, cutoff_sigma=3.0, shift=False, tail_correction=True
    )
    frames, _ = sample_state_points(sampling_copy(model), points, settings)
    rho = 256 / frames.volume * SIGMA**3
    print(f"set: T = {temperature:.2f} K, P = {pressure:.5f} GPa; NIST: rho* = 0.82, U*/N = -5.826")
    for k in range(args.systems):
        p, p_err = frames.pressure[:, k].mean(), standard_error_of_mean(frames.pressure[:, k])
        print(
            f"system {k}: rho* = {float(rho[:, k].mean()):.4f}, "
            f"P = {float(p):.5f} ± {float(p_err):.5f} GPa, "
            f"T = {float(frames.temperature[:, k].mean()):.2f} K, "
            f"U*/N = {float(frames.potential_energy[:, k].mean()) / 256 / eps:.4f}, "
            f"valid frames {int(frames.phase_ok[:, k].sum())}/{frames.n_frames}"
        )
    print(f"all: rho* = {float(rho.mean()):.4f}, P = {float(frames.pressure.mean()):.5f} GPa")


if __name__ == "__main__":
    main()
