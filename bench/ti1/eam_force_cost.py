"""Ti1 EAM cost: closed-form forces against the autograd path, force call and NPT MD step.

    .venv/bin/python -m bench.ti1.eam_force_cost [REPEATS]

bcc 3 × 1,024 atoms (rattled 0.1 Å), one thread. The autograd path is the same Ti1 built with
plain callables (no ``value_and_derivative``), as any user-supplied radial function runs.
Prints ms per force call (20 calls) and per NPT step of ``sample_state_points`` (3 fs, 100
equilibration + 200 production steps after a 20-step warm-up), alternating the two paths.
"""

import sys
import time

import torch
import torch_sim as ts

from phasetune.potentials.eam import (
    TI1_CUTOFF_A,
    EmbeddedAtomModel,
    _ti1_density,
    _ti1_embedding,
    _ti1_pair,
    mendelev_ti1,
)
from phasetune.sampling.sampler import StatePoint, sample_state_points
from phasetune.settings import SamplerSettings
from phasetune.structures import build_structure

torch.set_num_threads(1)
crystal = build_structure("bcc", element="Ti", lattice_A=3.31, n_atoms=1024)


def autograd_ti1() -> EmbeddedAtomModel:
    return EmbeddedAtomModel(
        pair_eV=lambda r: _ti1_pair(r),
        density=lambda r: _ti1_density(r),
        embedding_eV=lambda rho: _ti1_embedding(rho),
        cutoff_A=TI1_CUTOFF_A,
    )


def force_call_ms(model) -> float:
    rattled = crystal.copy()
    rattled.rattle(0.1, seed=1)
    state = ts.io.atoms_to_state([rattled] * 3, device="cpu", dtype=torch.float64)
    model(state)
    start = time.perf_counter()
    for _ in range(20):
        state.positions = state.positions + 0.001 * torch.randn_like(state.positions)
        model(state)
    return (time.perf_counter() - start) / 20 * 1e3


def md_step_ms(model) -> float:
    points = [
        StatePoint(name=f"bcc{t:g}", phase="bcc", atoms=crystal, temperature_K=t)
        for t in (1500.0, 1600.0, 1700.0)
    ]

    def run(equilibration: int, production: int) -> None:
        settings = SamplerSettings(
            timestep_fs=3.0,
            equilibration_steps=equilibration,
            melt_steps=0,
            production_steps=production,
            stride=10,
            compressibility_per_GPa=0.02,
            progress=False,
        )
        sample_state_points(model, points, settings)

    run(0, 20)
    start = time.perf_counter()
    run(100, 200)
    return (time.perf_counter() - start) / 300 * 1e3


for _repeat in range(int(sys.argv[1]) if len(sys.argv) > 1 else 1):
    for name, build in (("closed form", mendelev_ti1), ("autograd", autograd_ti1)):
        model = build()
        print(
            f"{name}: force call {force_call_ms(model):.1f} ms, "
            f"NPT step {md_step_ms(model):.1f} ms (3 × 1,024 atoms)",
            flush=True,
        )
