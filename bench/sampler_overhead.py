"""Sampler overhead: wall time per MD step of phasetune's sampler / one bare batched force call.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.sampler_overhead --model both --repeats 5

(``--model lj`` or ``--model mace`` for one of them; ``--lj-steps``, ``--mace-steps`` set the
run length.) The goal is a ratio ≤ 1.15.

* numerator: ``sample_state_points`` (C-rescale NPT, stability guard on, as by default) run
  for ``steps`` production steps with ``equilibration_steps=0``, ``check_phase=False``,
  ``progress=False`` and ``stride=steps`` (one frame), wall time of the whole call divided
  by ``steps`` (so it also carries the setup and the initial force call, a 1/steps share);
* denominator: ``model(state)`` on the same batch (energy, forces and stress), positions
  moved by 1e-4 Å (Gaussian) before every call so that nothing can be short-circuited,
  on the starting structures (the headline) and, as a second denominator, on the final
  configuration of the overhead run (thermal disorder and the relaxed cell change the
  number of neighbour pairs: perfect lattices have whole shells just inside the cutoff).

The ratio is taken per repeat (bare calls and sampler runs of one repeat run back to back)
and the median over repeats is reported. Rows besides the overhead run, for attribution: the
stability guard off, and frames recorded every 20 steps (the default stride) without and with
the phase check, which is part of the sampler. Also printed: the same overhead run with a
zero-force model, i.e. the sampler's own cost per step in units of a bare force call.

The model is wrapped in a timer, giving two more columns: step / (model time per step in the
same run), which is insensitive to load changes between the bare calls and the run, and the
median model call inside the run that did not rebuild a neighbour list. phasetune's
``LennardJones`` keeps a Verlet list: the bare calls reuse it (1e-4 Å moves never trigger a
rebuild), the MD run rebuilds it every few steps (counted), so in the MD run the model costs
more per step than a bare call; torch-sim's ``MaceModel`` builds its list on every call.

Systems: (a) Lennard-Jones argon (phasetune ``LennardJones``, r_c = 2.5σ, shifted), 8 systems
alternating fcc (60 K) and compressed-liquid-density fcc (100 K) of 108 and 256 atoms,
0.05 GPa, dt = 10 fs; (b) torch-sim's ``MaceModel`` around ``build_mace(atomic_numbers=[22])``
(seeded, untrained, float64), 4 systems alternating bcc Ti (54 atoms, 1500 K, isotropic) and
hcp Ti (48 atoms, 1000 K, anisotropic cell), 0 GPa, dt = 1 fs. Medians over ``--repeats``;
the rows of one repeat run one after the other, so load drift spreads over all rows.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import torch_sim as ts  # noqa: E402

from bench.common import ARGON_EPSILON_EV as EPS  # noqa: E402
from bench.common import ARGON_SIGMA_A as SIGMA  # noqa: E402
from bench.common import Delegating, load_average, utc  # noqa: E402
from phasetune.potentials.lennard_jones import LennardJones  # noqa: E402
from phasetune.sampling.sampler import (  # noqa: E402
    SamplerSettings,
    StatePoint,
    sample_state_points,
)
from phasetune.sampling.stability import StabilitySettings  # noqa: E402
from phasetune.structures import build_structure  # noqa: E402

DEFAULT_STRIDE = SamplerSettings().stride
OVERHEAD = "overhead run: phase check off, 1 frame"


class Timed(Delegating):
    """Delegates to ``inner`` and keeps the duration of every forward call, and for models
    with a Verlet list whether that call rebuilt it."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__(inner)
        self.times: list[float] = []
        self.rebuilt: list[bool] = []

    def forward(self, state, **kwargs):
        neighbors = getattr(self.inner, "neighbors", None)
        builds = neighbors.n_builds if neighbors is not None else 0
        start = time.perf_counter()
        out = self.inner(state, **kwargs)
        self.times.append(time.perf_counter() - start)
        neighbors = getattr(self.inner, "neighbors", None)
        self.rebuilt.append(neighbors is not None and neighbors.n_builds > builds)
        return out


class ZeroModel(torch.nn.Module):
    """Zero energy, forces and stress: what is left of a step is the sampler's own cost."""

    def __init__(self) -> None:
        super().__init__()
        self.device = torch.device("cpu")
        self.dtype = torch.float64

    def forward(self, state, **_):
        n = state.n_systems
        zeros = torch.zeros(n, dtype=self.dtype)
        return {
            "energy": zeros,
            "forces": torch.zeros_like(state.positions),
            "stress": torch.zeros(n, 3, 3, dtype=self.dtype),
        }


def lj_points(n_systems: int) -> list[StatePoint]:
    points = []
    for k in range(n_systems):
        liquid = k % 2 == 1
        points.append(
            StatePoint(
                name=f"ar{k}",
                phase="liquid" if liquid else "fcc",
                atoms=build_structure(
                    "liquid" if liquid else "fcc",
                    element="Ar",
                    lattice_A=5.75 if liquid else 5.30,
                    n_atoms=(108, 108, 256, 256)[k % 4],
                ),
                temperature_K=100.0 if liquid else 60.0,
                pressure_GPa=0.05,
            )
        )
    return points


def mace_points(n_systems: int) -> list[StatePoint]:
    points = []
    for k in range(n_systems):
        if k % 2 == 0:
            atoms = build_structure("bcc", element="Ti", lattice_A=3.30, n_atoms=54)
            phase, temperature = "bcc", 1500.0
        else:
            atoms = build_structure("hcp", element="Ti", lattice_A=2.95, c_over_a=1.586, n_atoms=48)
            phase, temperature = "hcp", 1000.0
        points.append(
            StatePoint(
                name=f"ti{k}", phase=phase, atoms=atoms, temperature_K=temperature, pressure_GPa=0.0
            )
        )
    return points


def make_lj() -> torch.nn.Module:
    return LennardJones(epsilon_eV=EPS, sigma_A=SIGMA, cutoff_sigma=2.5)


def make_mace() -> torch.nn.Module:
    from torch_sim.models.mace import MaceModel

    from phasetune.potentials.mace import build_mace

    return MaceModel(
        build_mace(atomic_numbers=[22], dtype=torch.float64),
        device=torch.device("cpu"),
        dtype=torch.float64,
    )


def variants(steps: int) -> dict[str, dict]:
    """Sampler settings overrides per row (the first is the overhead measurement)."""
    stride = min(DEFAULT_STRIDE, steps)
    return {
        OVERHEAD: dict(stride=steps, check_phase=False),
        "  same, stability guard off": dict(
            stride=steps, check_phase=False, stability=StabilitySettings(enabled=False)
        ),
        f"frames every {stride} steps, phase check off": dict(stride=stride, check_phase=False),
        f"frames every {stride} steps, phase check on (default)": dict(
            stride=stride, check_phase=True
        ),
    }


def time_sampler(make, points, base: dict, override: dict, steps: int) -> dict:
    model = Timed(make())
    settings = SamplerSettings(
        equilibration_steps=0, production_steps=steps, progress=False, **{**base, **override}
    )
    start = time.perf_counter()
    frames, md = sample_state_points(model, points, settings)
    wall = time.perf_counter() - start
    calls = model.times[1:]  # the MD steps' calls (the first is crescale_init's)
    rebuilt = model.rebuilt[1:]
    plain = [t for t, r in zip(calls, rebuilt, strict=True) if not r] or calls
    return {
        "step": wall / steps,
        "model_per_step": sum(calls) / len(calls),
        "plain_call": statistics.median(plain),
        "builds": sum(rebuilt),
        "events": len(frames.metadata.get("md_events", [])),
        "final": ts.SimState(
            positions=md.positions.detach().clone(),
            masses=md.masses,
            cell=md.cell.detach().clone(),
            pbc=md.pbc,
            atomic_numbers=md.atomic_numbers,
            system_idx=md.system_idx,
        ),
    }


def time_forces(make, points, calls: int, state: ts.SimState | None = None) -> float:
    """Median seconds per bare ``model(state)`` (positions moved by 1e-4 Å before each), on
    the starting structures or on ``state``."""
    model = make()
    if state is None:
        state = ts.io.atoms_to_state([p.atoms for p in points], device="cpu", dtype=torch.float64)
    else:
        state = state.clone()
    model(state)
    model(state)
    times = []
    generator = torch.Generator().manual_seed(0)
    for _ in range(calls):
        state.positions = state.positions + 1e-4 * torch.randn(
            state.positions.shape, generator=generator, dtype=state.positions.dtype
        )
        start = time.perf_counter()
        out = model(state)
        times.append(time.perf_counter() - start)
        assert out["forces"].shape == state.positions.shape and out["stress"].shape[0] == len(
            points
        )
    return statistics.median(times)


def bench(name: str, make, points, base: dict, steps: int, repeats: int, calls: int) -> None:
    n_atoms = [len(p.atoms) for p in points]
    print(f"\n### {name}\n")
    print(
        f"{len(points)} systems ({'/'.join(map(str, n_atoms))} atoms, {sum(n_atoms)} in all), "
        f"{steps} steps of {base['timestep_fs']:g} fs, {torch.get_num_threads()} thread(s), "
        f"median of {repeats} repeats"
    )
    print(f"start {utc()}, load average {load_average()}")
    rows = variants(steps)
    results: dict[str, list[dict]] = {k: [] for k in rows}
    zero, bare, bare_md = [], [], []
    for _ in range(repeats):
        bare.append(time_forces(make, points, calls))
        for key, override in rows.items():
            results[key].append(time_sampler(make, points, base, override, steps))
        bare_md.append(time_forces(make, points, calls, state=results[OVERHEAD][-1]["final"]))
        zero.append(time_sampler(ZeroModel, points, base, variants(steps)[OVERHEAD], steps))
    print(f"end   {utc()}, load average {load_average()}\n")
    force = statistics.median(bare)
    print(
        f"bare force call (median of {repeats} repeats × {calls} calls): {1e3 * force:.2f} ms; "
        f"per repeat: {', '.join(f'{1e3 * b:.2f}' for b in bare)} ms"
    )
    print(
        f"bare force call at the overhead run's final configuration: "
        f"{1e3 * statistics.median(bare_md):.2f} ms; "
        f"per repeat: {', '.join(f'{1e3 * b:.2f}' for b in bare_md)} ms"
    )
    z = statistics.median(r["step"] for r in zero)
    print(
        f"sampler alone (same overhead run with a zero-force model): {1e3 * z:.2f} ms per step "
        f"= {z / force:.3f} bare force calls\n"
    )
    print(
        "| run | ms per MD step | step / bare force call | step / bare call, final config "
        "| step / model time per step (same run) | model call in MD, no list rebuild (ms) "
        "| list rebuilds | MD events |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for key, runs in results.items():
        step = statistics.median(r["step"] for r in runs)
        ratio = statistics.median(r["step"] / b for r, b in zip(runs, bare, strict=True))
        ratio_md = statistics.median(r["step"] / b for r, b in zip(runs, bare_md, strict=True))
        in_run = statistics.median(r["step"] / r["model_per_step"] for r in runs)
        plain = statistics.median(r["plain_call"] for r in runs)
        builds = statistics.median(r["builds"] for r in runs)
        events = max(r["events"] for r in runs)
        print(
            f"| {key} | {1e3 * step:.2f} | **{ratio:.3f}** | {ratio_md:.3f} | {in_run:.3f} "
            f"| {1e3 * plain:.2f} "
            f"| {builds:g} | {events} |"
        )
    per_repeat = [r["step"] / b for r, b in zip(results[OVERHEAD], bare, strict=True)]
    print(
        f"\noverhead run, step / bare force call per repeat: "
        f"{', '.join(f'{x:.3f}' for x in per_repeat)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("lj", "mace", "both"), default="both")
    parser.add_argument("--lj-systems", type=int, default=8)
    parser.add_argument("--lj-steps", type=int, default=300)
    parser.add_argument("--mace-systems", type=int, default=4)
    parser.add_argument("--mace-steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20, help="bare force calls per repeat")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    # the unmelted "liquid" starts fail the phase check; that is expected and not timed apart
    logging.getLogger("phasetune").setLevel(logging.ERROR)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {args.threads} torch thread(s)")
    if args.model in ("lj", "both"):
        bench(
            "Lennard-Jones argon (phasetune LennardJones)",
            make_lj,
            lj_points(args.lj_systems),
            dict(timestep_fs=10.0, compressibility_per_GPa=0.5),
            args.lj_steps,
            args.repeats,
            args.calls,
        )
    if args.model in ("mace", "both"):
        bench(
            "small MACE Ti (torch-sim MaceModel around build_mace(atomic_numbers=[22]))",
            make_mace,
            mace_points(args.mace_systems),
            dict(timestep_fs=1.0, compressibility_per_GPa=0.01),
            args.mace_steps,
            args.repeats,
            max(5, args.calls // 2),
        )


if __name__ == "__main__":
    main()
