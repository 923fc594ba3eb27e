"""Which NPT integrator samples the right volume distribution? An ideal-gas check.

    python -m bench.npt_ensemble --atoms 4 --systems 32 --steps 6000

For N ideal-gas atoms with the centre of mass fixed, the NPT volume distribution is
P(V) ∝ V^(N−1) exp(−βPV): ⟨V⟩ = N kT/P and Var V = N (kT/P)². Compares phasetune's
per-system C-rescale with torch-sim's own isotropic C-rescale and NPT Langevin integrators
on the same batch, and prints ⟨V⟩ and Var V relative to the exact values.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch_sim as ts
from ase import Atoms
from torch_sim.integrators import npt as tsnpt

from phasetune.potentials.ideal_gas import IdealGas
from phasetune.sampling.integrator import EnsembleTargets, crescale_init, crescale_step
from phasetune.units import KB_EV_PER_K, fs_to_internal


def run(name: str, n_atoms: int, n_systems: int, steps: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    atoms = [
        Atoms(f"Ar{n_atoms}", positions=rng.random((n_atoms, 3)) * 20, cell=[20] * 3, pbc=True)
        for _ in range(n_systems)
    ]
    state = ts.io.atoms_to_state(atoms, device="cpu", dtype=torch.float64)
    state.rng = seed
    model = IdealGas()
    kT = KB_EV_PER_K * 300.0
    pressure = n_atoms * kT / 8000.0
    dt = fs_to_internal(5.0)
    tau_p = fs_to_internal(200.0)
    beta = 1.0 / pressure

    def full(x):
        return torch.full((n_systems,), x, dtype=torch.float64)

    if name == "phasetune C-rescale":
        targets = EnsembleTargets(
            kT=full(kT),
            pressure=full(pressure),
            cell_mode=torch.ones(n_systems, dtype=int),
            tau_thermostat=full(fs_to_internal(100.0)),
            tau_barostat=full(tau_p),
            compressibility=full(beta),
        )
        md = crescale_init(state, model, targets=targets)

        def step(md):
            return crescale_step(md, model, dt=torch.tensor(dt), targets=targets)
    elif name == "torch-sim npt_crescale_isotropic":
        md = tsnpt.npt_crescale_init(
            state, model, kT=kT, dt=dt, tau_p=tau_p, isothermal_compressibility=beta
        )

        def step(md):
            return tsnpt.npt_crescale_isotropic_step(
                md, model, dt=dt, kT=kT, external_pressure=pressure, tau=fs_to_internal(100.0)
            )
    else:
        md = tsnpt.npt_langevin_isotropic_init(state, model, kT=kT, dt=dt, b_tau=tau_p)

        def step(md):
            return tsnpt.npt_langevin_isotropic_step(
                md, model, dt=dt, kT=kT, external_pressure=pressure
            )

    volumes = []
    for k in range(steps):
        md = step(md)
        if k >= steps // 10 and k % 10 == 0:
            volumes.append(torch.linalg.det(md.cell).clone())
    return torch.stack(volumes).numpy(), n_atoms * kT / pressure, n_atoms * (kT / pressure) ** 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", type=int, default=4)
    parser.add_argument("--systems", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"ideal gas, N = {args.atoms}, {args.systems} systems, {args.steps} steps of 5 fs")
    for name in (
        "phasetune C-rescale",
        "torch-sim npt_crescale_isotropic",
        "torch-sim npt_langevin_isotropic",
    ):
        volumes, mean_exact, var_exact = run(name, args.atoms, args.systems, args.steps)
        err = volumes.mean(0).std() / np.sqrt(args.systems) / mean_exact
        print(
            f"{name:34s} <V>/exact = {volumes.mean() / mean_exact:.3f} ± {err:.3f}   "
            f"Var V/exact = {volumes.var() / var_exact:.3f}"
        )


if __name__ == "__main__":
    main()
