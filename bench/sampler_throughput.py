"""Sampler throughput: atom-steps per second for a batch of Lennard-Jones state points in NPT.

    python -m bench.sampler_throughput --systems 8 --atoms 256 --steps 500 --repeats 3 --threads 2

Prints the median over repeats of (systems × atoms × steps) / wall time, for phasetune's
sampler (C-rescale NPT, analytic-force LJ with a Verlet skin list) and, for comparison,
torch-sim's stock LennardJonesModel driven by the same integrator, and the ratio of the time
per MD step to one bare batched force evaluation (sampler overhead).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch_sim as ts
from torch_sim.models.lennard_jones import LennardJonesModel

from bench.common import ARGON_EPSILON_EV as EPS
from bench.common import ARGON_SIGMA_A as SIGMA
from phasetune.potentials.lennard_jones import LennardJones
from phasetune.sampling.sampler import SamplerSettings, StatePoint, sample_state_points
from phasetune.structures import build_structure


def state_points(n_systems: int, n_atoms: int) -> list[StatePoint]:
    points = []
    for k in range(n_systems):
        liquid = k % 2 == 1
        points.append(
            StatePoint(
                name=f"sp{k}",
                phase="liquid" if liquid else "fcc",
                atoms=build_structure(
                    "liquid" if liquid else "fcc",
                    element="Ar",
                    lattice_A=5.75 if liquid else 5.30,
                    n_atoms=n_atoms,
                ),
                temperature_K=100.0 if liquid else 60.0,
                pressure_GPa=0.05,
            )
        )
    return points


def time_sampler(model, points, steps: int) -> float:
    settings = SamplerSettings(
        timestep_fs=10.0,
        equilibration_steps=0,
        production_steps=steps,
        stride=steps,
        check_phase=False,
        progress=False,
        compressibility_per_GPa=0.5,
    )
    start = time.perf_counter()
    sample_state_points(model, points, settings)
    return time.perf_counter() - start


def time_forces(model, points, calls: int = 20) -> float:
    state = ts.io.atoms_to_state([p.atoms for p in points], device="cpu", dtype=torch.float64)
    model(state)
    start = time.perf_counter()
    for _ in range(calls):
        state.positions = state.positions + 1e-4 * torch.randn_like(state.positions)
        model(state)
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", type=int, default=8)
    parser.add_argument("--atoms", type=int, default=256)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    points = state_points(args.systems, args.atoms)
    n_total = sum(len(p.atoms) for p in points)
    models = {
        "phasetune LennardJones": lambda: LennardJones(
            epsilon_eV=EPS, sigma_A=SIGMA, cutoff_sigma=2.5
        ),
        "torch-sim LennardJonesModel": lambda: LennardJonesModel(
            sigma=SIGMA, epsilon=EPS, cutoff=2.5 * SIGMA, dtype=torch.float64, compute_stress=True
        ),
    }
    print(
        f"{args.systems} systems, {n_total} atoms, {args.steps} NPT steps, {args.threads} threads"
    )
    for name, make in models.items():
        walls = [time_sampler(make(), points, args.steps) for _ in range(args.repeats)]
        wall = statistics.median(walls)
        force = statistics.median(time_forces(make(), points) for _ in range(args.repeats))
        print(
            f"{name:30s} {n_total * args.steps / wall:10.0f} atom-steps/s   "
            f"step/force-call = {wall / args.steps / force:.2f}"
        )


if __name__ == "__main__":
    main()
