"""Batched sampling vs. what users would otherwise write: one ASE MD run per state point.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.batched_vs_ase --model lj --repeats 3
    OMP_NUM_THREADS=1 .venv/bin/python -m bench.batched_vs_ase --model mace --repeats 2

The same N state points (``--n 8 24``) are run for the same number of steps with the same
time step (i) in one phasetune batch (``sample_state_points``, C-rescale NPT with V-rescale
thermostat, stability guard on, frames every 20 steps, ``check_phase=False``) and (ii) as a
plain ASE loop, one state point after another: ``MaxwellBoltzmannDistribution`` +
``ase.md.nose_hoover_chain.IsotropicMTKNPT`` (Nosé-Hoover chain + MTK barostat: an NPT
integrator with one force call per step, checked by counting calculator calls), an observer
storing E_pot, volume and temperature every 20 steps. Thermostat and barostat times are the
same on both sides (100 fs, 1000 fs). Each side's wall time includes its setup (building
the state, the initial force call, per point for ASE). Reported: wall time per state
point-step, (total wall) / (N × steps), the speed-up ASE / phasetune, and force calls per
step (counted; the initial call included). The headline ASE row runs all N points; the slower
secondary rows run the first 2 points (one of each kind) and are scaled to N, which is exact
up to noise because the ASE loop runs the points one after another.

Calculators on the ASE side:

* ``--model lj`` (Lennard-Jones argon, ε/k_B = 119.8 K, σ = 3.405 Å, r_c = 2.5σ, truncated
  and shifted; alternating fcc 60 K / fcc-at-liquid-density 100 K, 108 atoms, 0.05 GPa,
  dt = 10 fs): ``TorchSimCalculator``, a ten-line ASE calculator that calls phasetune's
  ``LennardJones`` on the one system (same model and Verlet list as the batch: the fair
  comparison), and ASE's own ``ase.calculators.lj.LennardJones(sigma, epsilon, rc=2.5σ,
  smooth=False)``, which shifts the energy to zero at r_c like phasetune's ``shift=True``
  (a NumPy loop over atoms with ASE's ``NeighborList``). Also ASE's ``NPTBerendsen`` with
  the wrapper, which (as written in ASE 3.29) evaluates the forces twice per step.
* ``--model mace`` (``build_mace(atomic_numbers=[22])``, seeded, untrained, float64;
  alternating bcc Ti 54 atoms 1500 K / hcp Ti 48 atoms 1000 K, 0 GPa, dt = 1 fs, isotropic
  cell on both sides because ``IsotropicMTKNPT`` is isotropic): mace's own
  ``MACECalculator(models=...)`` around a copy of the same module, and ``TorchSimCalculator``
  around torch-sim's ``MaceModel`` (the object phasetune's batch runs).
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import statistics
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch_sim as ts  # noqa: E402
from ase import units  # noqa: E402
from ase.calculators.calculator import Calculator, all_changes  # noqa: E402
from ase.md.nose_hoover_chain import IsotropicMTKNPT  # noqa: E402
from ase.md.nptberendsen import NPTBerendsen  # noqa: E402
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary  # noqa: E402
from ase.stress import full_3x3_to_voigt_6_stress  # noqa: E402

from bench.common import ARGON_EPSILON_EV as EPS  # noqa: E402
from bench.common import ARGON_SIGMA_A as SIGMA  # noqa: E402
from bench.common import Delegating, load_average, utc  # noqa: E402
from bench.sampler_overhead import mace_points  # noqa: E402
from phasetune.potentials.lennard_jones import LennardJones  # noqa: E402
from phasetune.sampling.sampler import (  # noqa: E402
    SamplerSettings,
    StatePoint,
    sample_state_points,
)
from phasetune.structures import build_structure  # noqa: E402

RC_SIGMA = 2.5
TAU_T_FS, TAU_P_FS, STRIDE = 100.0, 1000.0, 20


class TorchSimCalculator(Calculator):
    """ASE calculator around a torch-sim model, one system at a time."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, model: torch.nn.Module, **kwargs) -> None:
        super().__init__(**kwargs)
        self.model = model

    def calculate(self, atoms=None, properties=None, system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        state = ts.io.atoms_to_state(self.atoms, device="cpu", dtype=torch.float64)
        out = self.model(state)
        energy = float(out["energy"][0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": out["forces"].detach().numpy().copy(),
            "stress": full_3x3_to_voigt_6_stress(out["stress"][0].detach().numpy()),
        }


class Counting(Delegating):
    """Delegates to ``inner`` and counts its forward calls."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__(inner)
        self.calls = 0

    def forward(self, state, **kwargs):
        self.calls += 1
        return self.inner(state, **kwargs)


# ----------------------------------------------------------------- systems and models
def lj_points(n: int) -> list[StatePoint]:
    points = []
    for k in range(n):
        liquid = k % 2 == 1
        points.append(
            StatePoint(
                name=f"ar{k}",
                phase="liquid" if liquid else "fcc",
                atoms=build_structure(
                    "fcc", element="Ar", lattice_A=5.75 if liquid else 5.30, n_atoms=108
                ),
                temperature_K=100.0 if liquid else 60.0,
                pressure_GPa=0.05,
            )
        )
    return points


def phasetune_lj() -> torch.nn.Module:
    return LennardJones(epsilon_eV=EPS, sigma_A=SIGMA, cutoff_sigma=RC_SIGMA, shift=True)


_MACE_MODULE = None


def mace_module() -> torch.nn.Module:
    global _MACE_MODULE
    if _MACE_MODULE is None:
        from phasetune.potentials.mace import build_mace

        _MACE_MODULE = build_mace(atomic_numbers=[22], dtype=torch.float64)
    return copy.deepcopy(_MACE_MODULE)


def torchsim_mace() -> torch.nn.Module:
    from torch_sim.models.mace import MaceModel

    return MaceModel(mace_module(), device=torch.device("cpu"), dtype=torch.float64)


def ase_calculators(model: str) -> dict:
    """name -> (calculator factory, ASE integrator name, state points measured or None = all).

    The slow secondary rows run the first 2 state points only (one of each kind) and their
    time is scaled to N: ASE runs the points one after another, so its cost is linear in N.
    """
    if model == "lj":
        from ase.calculators.lj import LennardJones as AseLJ

        def ase_lj():
            return AseLJ(sigma=SIGMA, epsilon=EPS, rc=RC_SIGMA * SIGMA, smooth=False)

        return {
            "ASE MTK NPT + TorchSimCalculator(phasetune LennardJones)": (
                lambda: TorchSimCalculator(phasetune_lj()),
                "mtk",
                None,
            ),
            "ASE MTK NPT + ase.calculators.lj.LennardJones": (ase_lj, "mtk", 2),
            "ASE NPTBerendsen + TorchSimCalculator(phasetune LennardJones)": (
                lambda: TorchSimCalculator(phasetune_lj()),
                "berendsen",
                2,
            ),
        }
    from mace.calculators import MACECalculator

    return {
        "ASE MTK NPT + mace MACECalculator": (
            lambda: MACECalculator(models=mace_module(), device="cpu", default_dtype="float64"),
            "mtk",
            None,
        ),
        "ASE MTK NPT + TorchSimCalculator(torch-sim MaceModel)": (
            lambda: TorchSimCalculator(torchsim_mace()),
            "mtk",
            2,
        ),
    }


# ----------------------------------------------------------------- the two ways to run
def run_batch(make_model, points, steps: int, dt_fs: float, compressibility: float) -> dict:
    settings = SamplerSettings(
        timestep_fs=dt_fs,
        equilibration_steps=0,
        production_steps=steps,
        stride=STRIDE,
        thermostat_tau_fs=TAU_T_FS,
        barostat_tau_fs=TAU_P_FS,
        compressibility_per_GPa=compressibility,
        check_phase=False,
        progress=False,
    )
    model = Counting(make_model())
    start = time.perf_counter()
    frames, _ = sample_state_points(model, points, settings)
    wall = time.perf_counter() - start
    return {
        "wall": wall,
        "T": frames.temperature.mean(0).numpy(),
        "calls_per_step": model.calls / steps,
    }


def run_ase(make_calc, integrator: str, points, steps: int, dt_fs: float, bulk_GPa: float):
    start = time.perf_counter()
    temperatures, calls = [], 0
    for k, point in enumerate(points):
        atoms = point.atoms.copy()
        calc = make_calc()
        calculate = calc.calculate

        def counted(*args, calculate=calculate, **kwargs):
            nonlocal calls
            calls += 1
            return calculate(*args, **kwargs)

        calc.calculate = counted
        atoms.calc = calc
        MaxwellBoltzmannDistribution(
            atoms, temperature_K=point.temperature_K, rng=np.random.default_rng(k)
        )
        Stationary(atoms)
        if integrator == "mtk":
            dyn = IsotropicMTKNPT(
                atoms,
                timestep=dt_fs * units.fs,
                temperature_K=point.temperature_K,
                pressure_au=point.pressure_GPa * units.GPa,
                tdamp=TAU_T_FS * units.fs,
                pdamp=TAU_P_FS * units.fs,
            )
        else:
            dyn = NPTBerendsen(
                atoms,
                timestep=dt_fs * units.fs,
                temperature_K=point.temperature_K,
                pressure_au=point.pressure_GPa * units.GPa,
                taut=TAU_T_FS * units.fs,
                taup=TAU_P_FS * units.fs,
                compressibility_au=1.0 / (bulk_GPa * units.GPa),
            )
        record = []
        dyn.attach(
            lambda a=atoms, r=record: r.append(
                (a.get_potential_energy(), a.get_volume(), a.get_temperature())
            ),
            interval=STRIDE,
        )
        dyn.run(steps)
        temperatures.append(np.mean([t for _, _, t in record[1:]]))
    wall = time.perf_counter() - start
    return {
        "wall": wall,
        "T": np.asarray(temperatures),
        "calls_per_step": calls / (len(points) * steps),
    }


# ----------------------------------------------------------------- checks and reporting
def check_lj_calculators() -> str:
    """Max |difference| between the wrapper and ASE's LJ on a rattled 108-atom fcc box."""
    from ase.calculators.lj import LennardJones as AseLJ

    atoms = build_structure("fcc", element="Ar", lattice_A=5.40, n_atoms=108)
    atoms.rattle(0.1, seed=1)
    mine = TorchSimCalculator(phasetune_lj())
    theirs = AseLJ(sigma=SIGMA, epsilon=EPS, rc=RC_SIGMA * SIGMA, smooth=False)
    a, b = atoms.copy(), atoms.copy()
    a.calc, b.calc = mine, theirs
    de = abs(a.get_potential_energy() - b.get_potential_energy())
    df = np.abs(a.get_forces() - b.get_forces()).max()
    ds = np.abs(a.get_stress() - b.get_stress()).max()
    return (
        f"wrapper vs ASE LJ: |ΔE| = {de:.2e} eV, max|ΔF| = {df:.2e} eV/Å, max|Δσ| = {ds:.2e} eV/Å³"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("lj", "mace"), default="lj")
    parser.add_argument("--n", type=int, nargs="+", default=[8, 24])
    parser.add_argument("--steps", type=int, default=None, help="default: LJ 300, MACE 60")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--ase-points",
        type=int,
        default=None,
        help="run at most this many state points per ASE loop and scale the time to N "
        "(ASE runs the points one after another, so its cost is linear in N)",
    )
    parser.add_argument("--skip", nargs="*", default=[], help="substrings of ASE rows to skip")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("phasetune").setLevel(logging.ERROR)

    if args.model == "lj":
        make_points, make_model = lj_points, phasetune_lj
        steps, dt_fs, compressibility = args.steps or 300, 10.0, 0.5
        print(check_lj_calculators())
    else:
        make_points, make_model = mace_points, torchsim_mace
        steps, dt_fs, compressibility = args.steps or 60, 1.0, 0.01
    calculators = {
        k: v for k, v in ase_calculators(args.model).items() if not any(s in k for s in args.skip)
    }
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} torch thread(s), "
        f"{steps} steps of {dt_fs:g} fs, median of {args.repeats} repeats"
    )
    rows = []
    for n in args.n:
        points = make_points(n)

        def measured(limit, points=points):
            limits = [x for x in (limit, args.ase_points) if x]
            return points[: min(limits)] if limits else points

        n_atoms = sum(len(p.atoms) for p in points)
        print(f"\nN = {n} ({n_atoms} atoms): start {utc()}, load {load_average()}")
        batch, ase = [], {k: [] for k in calculators}
        for _ in range(args.repeats):
            batch.append(run_batch(make_model, points, steps, dt_fs, compressibility))
            for name, (make_calc, integrator, limit) in calculators.items():
                ase[name].append(
                    run_ase(
                        make_calc, integrator, measured(limit), steps, dt_fs, 1 / compressibility
                    )
                )
        print(f"N = {n}: end {utc()}, load {load_average()}")
        t_batch = statistics.median(r["wall"] for r in batch) / (n * steps)
        print(f"  phasetune batch mean T per point (K): {np.round(batch[-1]['T'], 0)}")
        calls = batch[-1]["calls_per_step"]
        rows.append((n, "phasetune batch (sample_state_points)", t_batch, None, calls))
        for name, runs in ase.items():
            n_measured = len(measured(calculators[name][2]))
            t_ase = statistics.median(r["wall"] for r in runs) / (n_measured * steps)
            print(f"  {name}: mean T per point (K): {np.round(runs[-1]['T'], 0)}")
            label = name if n_measured == n else f"{name} ({n_measured} points, scaled to N)"
            rows.append((n, label, t_ase, t_ase / t_batch, runs[-1]["calls_per_step"]))
    print("\n| N | how | ms per state point-step | ASE / batch (speed-up) | force calls per step |")
    print("| ---: | --- | ---: | ---: | ---: |")
    headline = next(iter(calculators))
    for n, name, t, ratio, calls in rows:
        bold = "**" if name == headline else ""
        speedup = "–" if ratio is None else f"{bold}{ratio:.1f}×{bold}"
        print(f"| {n} | {name} | {1e3 * t:.3f} | {speedup} | {calls:.2f} |")


if __name__ == "__main__":
    main()
