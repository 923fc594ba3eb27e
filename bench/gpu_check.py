"""GPU check of the titanium experiment: MD throughput, reweighting and optimizer-step times.

On the GPU machine (installs the carried wheels first, see ``bench/gpu_check.sh``)::

    bash bench/gpu_check.sh                       # writes $OUT/gpu_check.json and .md

Dry run here, on the CPU, tiny (2 state points of 54 atoms, a few steps)::

    .venv/bin/python -m bench.gpu_check --device cpu --quick --out /tmp/gpu_check

Parts, in this order; each appends its results to ``OUT/gpu_check.json`` (and the Markdown
summary ``OUT/gpu_check.md``; with the pipeline's log, summary, metrics, report and plot,
eight files in all, the device's limit) as soon as it ends, so a run cut short keeps what it
measured, and a part is skipped when less than its estimate is left of ``--budget-s``:

1. ``md``: the Ti experiment's 24 state points (``phasetune/conf/targets/ti_phase_diagram.yaml``: 12
   coexistence points × 2 phases, 576 atoms each, 13,824 atoms) in one torch-sim batch,
   phasetune's sampler (C-rescale NPT, stability guard on, phase check off, one frame), for
   (a) ``ti_small`` (the CPU demo's MACE: 10k parameters, r_max 7 Å) and (b) a MACE of the
   foundation models' size built with ``mace.modules`` (MACE-MP-0 "medium"'s architecture:
   128x0e+128x1o, 2 interactions, max_ell 3, correlation 3, r_max 6 Å, 8 Bessel functions;
   seeded random weights with the interaction energy scaled by 0.01, so that the atoms stay
   near their lattice for the few timed steps: the foundation weights cannot be fetched
   there). Reported: bare batched force call (energy, forces, stress), ms per MD step,
   atom-steps/s, step / bare call (the sampler-overhead ratio), peak GPU memory.
2. ``pipeline``: ``phasetune experiment=ti_phase_diagram trainer=gpu model=ti_small`` (the
   same config, all 24 state points in one batch) with shortened sampling, the anchors from
   given model transition temperatures (no anchor MD: this is a timing run), a low ESS
   threshold's opposite (0.9, so that it re-samples), ``remeasure=false``. Reported from its
   ``summary.json`` and ``logs/.../metrics.csv``: time per optimizer step (reweighting
   forward, update), per re-sampling (MD and BAR chaining), MD steps.
3. ``ase``: what users would otherwise write, an ASE MD loop over the same 24 state points one
   after the other (``bench/batched_vs_ase.py``'s loop: ``IsotropicMTKNPT``, mace's
   ``MACECalculator`` around the same ti_small module on the same device), against
   phasetune's batch for the same steps (issue 7's ≥ 5× goal at 24 state points).
4. ``reweight``: one chunked DiffTRe forward+backward over F frames of one 576-atom bcc
   ensemble for both models, against one bare batched forward+backward over the same frames
   (issue 7's ≤ 1.3 goal), and its peak GPU memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

# isort: off
import mace  # noqa: F401  (before e3nn: mace sets torch.load defaults on import)
import torch
import torch_sim as ts

# isort: on
from omegaconf import OmegaConf

from bench.common import utc
from phasetune.configs import CONFIG_DIR
from phasetune.learn.difftre import (
    StatePointEnsemble,
    energies_on_frames,
    parameter_snapshot,
    reweighted_gibbs_change,
)
from phasetune.potentials.base import sampling_copy
from phasetune.potentials.evaluation import energies_only
from phasetune.potentials.mace import MacePotential, build_mace
from phasetune.potentials.mace_acceleration import cueq_available, cueq_kernels_available
from phasetune.sampling.frames import Frames
from phasetune.sampling.sampler import (
    SamplerSettings,
    StatePoint,
    sample_state_points,
)
from phasetune.targets import load_targets
from phasetune.ti_small import ti_small_potential

REPO = Path(__file__).resolve().parents[1]

#: ti_small's own transition temperatures at 0 GPa (bench/RESULTS.md), shifted along the
#: experimental lines: only the anchors' values depend on them, not the timings
TI_SMALL_OFFSET_K = {"hcp_bcc": 1281.0 - 1154.66, "bcc_liquid": 1998.0 - 1940.52}


class Report:
    """Results so far, rewritten to OUT after every part (JSON and Markdown); a part given
    again (the MD part, after each model) replaces its earlier entry."""

    def __init__(self, out: Path) -> None:
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.data: dict = {"started": utc(), "parts": {}}
        self.sections: dict[str, list[str]] = {}

    def part(self, name: str, result: dict, lines: list[str]) -> None:
        self.data["parts"][name] = result
        self.sections[name] = list(lines)
        self.data["updated"] = utc()
        (self.out / "gpu_check.json").write_text(json.dumps(self.data, indent=2, default=str))
        text = [f"\n## {k}\n\n" + "\n".join(v) + "\n" for k, v in self.sections.items()]
        (self.out / "gpu_check.md").write_text("# GPU check\n" + "".join(text) + "\n")
        print("\n".join([f"## {name}", *lines]), flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_mib(device: torch.device) -> float:
    return (
        torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    )


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def environment(device: torch.device) -> dict:
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_sim": getattr(ts, "__version__", "?"),
        "mace": getattr(mace, "__version__", "?"),
        "device": str(device),
        "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env |= {"gpu": props.name, "gpu_memory_GiB": props.total_memory / 2**30}
        env["cuda"] = torch.version.cuda
    try:
        import nvalchemiops  # noqa: F401

        env["nvalchemiops"] = True
    except ImportError:
        env["nvalchemiops"] = False  # torch-sim's GPU neighbour list falls back to torch
    # model.enable_cueq: the package (carried, small) and NVIDIA's fused kernels (≈ 74 MB of
    # wheels, beyond what a call carries): without them cuEquivariance runs plain PyTorch
    env["cuequivariance"] = cueq_available()
    env["cuequivariance_ops"] = cueq_kernels_available()
    return env


def ti_targets(quick: bool):
    entries = OmegaConf.to_container(
        OmegaConf.load(Path(CONFIG_DIR) / "targets" / "ti_phase_diagram.yaml"), resolve=True
    )["targets"]
    if quick:
        entries = [entries[0]]
        for phase in entries[0]["structures"].values():
            phase["n_atoms"] = 54 if phase["lattice_A"] > 3.0 else 48
    return load_targets(entries), entries


def state_points(targets) -> list[StatePoint]:
    return [
        StatePoint(
            name=f"{t.name}/{phase}",
            phase=phase,
            atoms=t.atoms(phase),
            temperature_K=t.temperature_K,
            pressure_GPa=t.pressure_GPa,
        )
        for t in targets
        for phase in t.phases
    ]


def make_models(device: torch.device, dtype: torch.dtype, quick: bool) -> dict:
    """name -> (live MacePotential, MD timestep in fs)."""
    medium = dict(
        r_max_A=6.0,
        hidden_irreps="128x0e + 128x1o",
        num_interactions=2,
        max_ell=3,
        correlation=3,
        num_bessel=8,
        avg_num_neighbors=40.0,
        scale=0.01,
        seed=0,
    )
    if quick:
        medium |= dict(hidden_irreps="16x0e + 16x1o", max_ell=2)
    models = {
        "ti_small": (ti_small_potential(device=device, dtype=dtype), 4.0),
        "mace_medium_size": (
            MacePotential(
                build_mace(atomic_numbers=[22], dtype=dtype, **medium), device=device, dtype=dtype
            ),
            1.0,
        ),
    }
    if cueq_available():  # the same weights with cuEquivariance tensor products
        kernels = "" if cueq_kernels_available() else "_no_kernels"
        models[f"mace_medium_size_cueq{kernels}"] = (
            MacePotential(
                build_mace(atomic_numbers=[22], dtype=dtype, **medium),
                device=device,
                dtype=dtype,
                enable_cueq=True,
            ),
            1.0,
        )
    return models


def cueq_energy_difference(models: dict, points, device, dtype) -> float | None:
    """max |E_cueq − E_e3nn| / N over the batch (eV/atom): the same function, so float
    rounding only (the issue's float32 tolerance); None without a cuEquivariance model."""
    cueq = [name for name in models if name.startswith("mace_medium_size_cueq")]
    if not cueq:
        return None
    state = ts.io.atoms_to_state([p.atoms for p in points], device=device, dtype=dtype)
    with torch.no_grad(), energies_only(models["mace_medium_size"][0]):
        plain = models["mace_medium_size"][0](state)["energy"].double()
    with torch.no_grad(), energies_only(models[cueq[0]][0]):
        accelerated = models[cueq[0]][0](state)["energy"].double()
    n_atoms = torch.tensor([len(p.atoms) for p in points], device=plain.device)
    return float(((accelerated - plain).abs() / n_atoms).max())


def n_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def time_bare(frozen, state: ts.SimState, device, calls: int) -> float:
    frozen(state)
    sync(device)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        frozen(state)
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_md(frozen, points, timestep_fs: float, n: int, seed: int, device, dtype):
    """Wall seconds of ``n`` production steps of ``sample_state_points`` (one frame), frames."""
    settings = SamplerSettings(
        timestep_fs=timestep_fs,
        equilibration_steps=0,
        production_steps=n,
        stride=n,
        melt_steps=0,
        check_phase=False,
        progress=False,
        compressibility_per_GPa=0.02,
        seed=seed,
    )
    sync(device)
    start = time.perf_counter()
    frames, _ = sample_state_points(frozen, points, settings, device=device, dtype=dtype)
    sync(device)
    return time.perf_counter() - start, frames


def time_difftre_step(live, ensemble, chunk: int, device) -> float:
    """Seconds of one chunked FEP forward + backward (the reweighting part of a step)."""
    live.zero_grad(set_to_none=True)
    sync(device)
    start = time.perf_counter()
    reweighted_gibbs_change(live, ensemble, chunk_frames=chunk).delta_g_eV.backward()
    sync(device)
    return time.perf_counter() - start


def time_bare_backward(live, batch, device, dtype) -> float:
    """Seconds of one batched forward of Σ U over all configurations, then backward."""
    live.zero_grad(set_to_none=True)
    state = ts.io.atoms_to_state(batch, device=device, dtype=dtype)
    sync(device)
    start = time.perf_counter()
    with energies_only(live):
        live(state)["energy"].sum().backward()
    sync(device)
    return time.perf_counter() - start


def part_md(report, models, points, device, dtype, steps: int, calls: int) -> None:
    result, lines = {}, []
    lines.append(
        f"{len(points)} state points, {sum(len(p.atoms) for p in points)} atoms in one batch, "
        f"{steps} timed MD steps after a {max(steps // 5, 2)}-step warm-up; bare call: median "
        f"of {calls}. {utc()}\n"
    )
    lines.append(
        "| model | parameters | dtype | bare force call (ms) | ms per MD step | atom-steps/s "
        "| step / bare call | peak GPU memory (MiB) | MD events |"
    )
    lines.append("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, (live, timestep) in models.items():
        try:
            row = md_row(live, timestep, points, device, dtype, steps, calls)
        except torch.OutOfMemoryError as err:  # keep the other model's row
            row = {"error": f"out of memory: {err}".splitlines()[0]}
        if device.type == "cuda":
            torch.cuda.empty_cache()
        result[name] = row
        if "error" in row:
            lines.append(f"| {name} | {n_parameters(live):,} | {dtype} | {row['error']} |")
        else:
            lines.append(
                f"| {name} | {row['parameters']:,} | {dtype} | {row['bare_call_ms']:.2f} "
                f"| {row['ms_per_step']:.2f} | {row['atom_steps_per_s']:,.0f} "
                f"| {row['step_over_bare']:.3f} | {row['peak_MiB']:.0f} | {row['md_events']} |"
            )
        report.part("md", result, lines)  # after each model: a later failure keeps this row
    difference = cueq_energy_difference(models, points, device, dtype)
    if difference is not None:
        result["cueq_max_energy_difference_eV_per_atom"] = difference
        lines.append(f"\ncuEquivariance vs e3nn energies: max |ΔE|/N = {difference:.2e} eV/atom")
        report.part("md", result, lines)
    elif not cueq_available():
        lines.append("\ncuEquivariance not installed here: the plain e3nn path only")
        report.part("md", result, lines)


def md_row(live, timestep, points, device, dtype, steps: int, calls: int) -> dict:
    """Bare batched force call and MD step of one model on the whole batch."""
    frozen = sampling_copy(live)
    state = ts.io.atoms_to_state([p.atoms for p in points], device=device, dtype=dtype)
    reset_peak(device)
    bare = time_bare(frozen, state, device, calls)
    time_md(frozen, points, timestep, max(steps // 5, 2), 1, device, dtype)  # warm-up
    wall, frames = time_md(frozen, points, timestep, steps, 2, device, dtype)
    step = wall / steps
    return {
        "parameters": n_parameters(live),
        "dtype": str(dtype),
        "bare_call_ms": 1e3 * bare,
        "ms_per_step": 1e3 * step,
        "atom_steps_per_s": sum(len(p.atoms) for p in points) / step,
        "step_over_bare": step / bare,
        "peak_MiB": peak_mib(device),
        "md_events": len(frames.metadata.get("md_events", [])),
    }


def cpu_threads(most: int) -> int:
    """PHASETUNE_THREADS if set (the test suite's xdist workers run one thread each), else
    up to ``most`` of the CPUs."""
    return int(os.environ.get("PHASETUNE_THREADS") or min(most, os.cpu_count() or 1))


def pipeline_overrides(entries: list[dict], run_dir: Path, quick: bool, device: torch.device):
    overrides = [
        "experiment=ti_phase_diagram",
        f"trainer={'gpu' if device.type == 'cuda' else 'default'}",
        "model=ti_small",
        f"hydra.run.dir={run_dir}",
        f"anchor.cache_dir={run_dir / 'anchor_cache'}",
        "sampler.melt_steps=300",
        "sampler.equilibration_steps=300",
        "sampler.production_steps=1000",
        "sampler.stride=10",
        "sampler.progress=false",
        "anchor.settings.enthalpy.equilibration_steps=200",
        "anchor.settings.enthalpy.melt_steps=200",
        "anchor.settings.enthalpy.production_steps=400",
        "anchor.settings.enthalpy.progress=false",
        "resampling.ess_threshold=0.9",
        "trainer.max_steps=6",
        "trainer.enable_progress_bar=false",
        "remeasure=false",
        "validation.diffusion=[]",
        "logger=csv",
        f"threads={cpu_threads(8)}",
    ]
    for k, entry in enumerate(entries):
        pair = "hcp_bcc" if "hcp" in entry["phases"] else "bcc_liquid"
        model_t = entry["temperature_K"] + TI_SMALL_OFFSET_K[pair]
        overrides.append(f"+targets.{k}.model_transition_K={model_t:.2f}")
    if quick:
        overrides += [
            "targets=ti_small_alpha_beta",
            "sampler.melt_steps=20",
            "sampler.equilibration_steps=20",
            "sampler.production_steps=40",
            "sampler.stride=4",
            "anchor.settings.enthalpy.equilibration_steps=20",
            "anchor.settings.enthalpy.melt_steps=20",
            "anchor.settings.enthalpy.production_steps=40",
            "trainer.max_steps=2",
            "targets.0.structures.hcp.n_atoms=48",
            "targets.0.structures.bcc.n_atoms=54",
        ]
        # ti_small_alpha_beta gives its model_transition_K itself
        overrides = [o for o in overrides if not o.startswith("+targets.")]
        overrides = list(dict.fromkeys(overrides))
    return overrides


def part_ase(report, models, points, device, dtype, steps: int) -> None:
    """ASE loop (one state point after another, MACECalculator) vs. the phasetune batch."""
    import copy

    from mace.calculators import MACECalculator

    from bench.batched_vs_ase import run_ase

    live, timestep = models["ti_small"]
    dtype_name = str(dtype).removeprefix("torch.")

    def calculator():
        return MACECalculator(
            models=copy.deepcopy(live.model), device=str(device), default_dtype=dtype_name
        )

    run_ase(calculator, "mtk", points[:1], 2, timestep, 110.0)  # warm-up
    ase = run_ase(calculator, "mtk", points, steps, timestep, 110.0)
    frozen = sampling_copy(live)
    time_md(frozen, points, timestep, 2, 1, device, dtype)  # warm-up
    batch_wall, _ = time_md(frozen, points, timestep, steps, 2, device, dtype)
    n = len(points)
    result = {
        "state_points": n,
        "steps": steps,
        "ase_ms_per_point_step": 1e3 * ase["wall"] / (n * steps),
        "batch_ms_per_point_step": 1e3 * batch_wall / (n * steps),
        "speedup": ase["wall"] / batch_wall,
        "ase_force_calls_per_step": ase["calls_per_step"],
    }
    lines = [
        f"{n} state points × {steps} steps of {timestep:g} fs, ti_small, {dtype_name}; {utc()}\n",
        "| | ms per state point-step |",
        "| --- | ---: |",
        f"| ASE IsotropicMTKNPT + MACECalculator, one point after another "
        f"| {result['ase_ms_per_point_step']:.2f} |",
        f"| phasetune, one batch | {result['batch_ms_per_point_step']:.2f} |",
        f"\nspeed-up **{result['speedup']:.1f}×** (ASE force calls per step: "
        f"{result['ase_force_calls_per_step']:.2f})",
    ]
    report.part("ase", result, lines)


def part_pipeline(report, entries, out: Path, device, quick: bool, timeout_s: float) -> None:
    import csv
    import shutil
    import tempfile

    # the run's directory (frames, checkpoints) stays outside OUT: only 8 files come back
    run_dir = Path(tempfile.mkdtemp(prefix="phasetune_gpu_pipeline_"))
    overrides = pipeline_overrides(entries, run_dir, quick, device)
    command = [sys.executable, "-m", "phasetune", *overrides]
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONUNBUFFERED="1")
    start = time.perf_counter()
    with open(out / "pipeline.log", "w") as log:
        done = subprocess.run(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s
        )
    wall = time.perf_counter() - start
    result = {"returncode": done.returncode, "wall_s": wall, "overrides": overrides}
    lines = [f"`phasetune {' '.join(overrides)}`\n", f"return code {done.returncode}, {wall:.0f} s"]
    summary_path = run_dir / "summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        result |= {k: summary[k] for k in ("steps", "resamplings", "md_steps", "atom_steps")}
        result["timing_s"] = summary.get("timing_s", {})
        shutil.copy(summary_path, out / "pipeline_summary.json")
        for name in ("phase_diagram.png", "report.csv"):
            if (run_dir / name).exists():
                shutil.copy(run_dir / name, out / f"pipeline_{name}")
        rows = []
        for path in sorted(run_dir.glob("logs/version_*/metrics.csv")):
            shutil.copy(path, out / "pipeline_metrics.csv")
            with open(path, newline="") as handle:
                rows += [r for r in csv.DictReader(handle) if r.get("time/step_s")]
        step = [float(r["time/step_s"]) for r in rows]
        update = [float(r["time/update_s"]) for r in rows]
        resampling = [float(r["time/resampling_s"]) for r in rows]
        plain = [s - r for s, r in zip(step, resampling, strict=True)]
        timing = result["timing_s"]
        result |= {
            "step_s_without_resampling_median": statistics.median(plain) if plain else None,
            "update_s_median": statistics.median(update) if update else None,
            "resampling_s_per_round": [r for r in resampling if r > 0],
            "md_atom_steps_per_s": result["atom_steps"] / timing["of_which_md"]
            if timing.get("of_which_md")
            else None,
        }
        lines += [
            f"{result['steps']} optimizer steps, {result['resamplings']} re-samplings (+ the "
            f"first sampling), {result['md_steps']:,} MD steps ({result['atom_steps']:,} "
            "atom-steps)",
            f"- optimizer step without re-sampling (reweighting forward + update), median: "
            f"{result['step_s_without_resampling_median']:.2f} s; of it the update "
            f"(backward + optimizer): {result['update_s_median']:.2f} s",
            "- re-sampling rounds inside steps: "
            + (", ".join(f"{r:.1f} s" for r in result["resampling_s_per_round"]) or "none"),
            f"- MD in all rounds: {timing.get('of_which_md', 0):.1f} s "
            f"({result['md_atom_steps_per_s']:,.0f} atom-steps/s with the phase check and "
            f"frame saving), BAR chaining and reference energies "
            f"{timing.get('of_which_chaining', 0):.1f} s (the first sampling and "
            f"{result['resamplings']} ensemble re-samplings)",
            f"- phases: {json.dumps({k: round(v, 1) for k, v in timing.items()})}",
        ]
    else:
        tail = (out / "pipeline.log").read_text()[-3000:]
        lines.append(f"no summary.json; log tail:\n```\n{tail}\n```")
    report.part("pipeline", result, lines)


def part_reweight(report, models, targets, device, dtype, frames_n: int, chunk: int) -> None:
    """Chunked DiffTRe forward+backward over ``frames_n`` frames vs. one bare batched
    forward+backward (autograd of Σ U over all frames, one graph)."""
    bcc = next(t for t in targets if "bcc" in t.phases)
    atoms = bcc.atoms("bcc")
    result, lines = {}, []
    lines.append(
        f"{frames_n} frames of {len(atoms)}-atom bcc Ti (rattled 0.05 Å), chunks of {chunk}; "
        f"{utc()}\n"
    )
    lines.append(
        "| model | chunked DiffTRe step (s) | ms per frame | bare forward+backward (s) "
        "| step / bare | peak GPU memory, step (MiB) | bare (MiB) |"
    )
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    generator = torch.Generator().manual_seed(7)
    for name, (live, _) in models.items():
        batch = []
        for _ in range(frames_n):
            a = atoms.copy()
            a.positions += 0.05 * torch.randn(a.positions.shape, generator=generator).numpy()
            batch.append(a)
        frames = Frames.from_atoms(batch, dtype=torch.float64)
        ensemble = StatePointEnsemble(
            name="bcc",
            target=bcc.name,
            phase="bcc",
            temperature_K=bcc.temperature_K,
            pressure_GPa=bcc.pressure_GPa,
            frames=frames,
            reference_energy=torch.zeros(frames_n, dtype=torch.float64),
            reference_params=parameter_snapshot(live),
        )
        with torch.no_grad():
            ensemble.reference_energy = energies_on_frames(live, ensemble).double().cpu()

        time_difftre_step(live, ensemble, chunk, device)
        reset_peak(device)
        t_step = statistics.median(
            [time_difftre_step(live, ensemble, chunk, device) for _ in range(3)]
        )
        peak_step = peak_mib(device)
        try:
            time_bare_backward(live, batch, device, dtype)
            reset_peak(device)
            t_bare = statistics.median(
                [time_bare_backward(live, batch, device, dtype) for _ in range(3)]
            )
            peak_bare = peak_mib(device)
        except torch.OutOfMemoryError:
            t_bare, peak_bare = float("nan"), float("nan")
        row = {
            "step_s": t_step,
            "ms_per_frame": 1e3 * t_step / frames_n,
            "bare_s": t_bare,
            "step_over_bare": t_step / t_bare,
            "peak_step_MiB": peak_step,
            "peak_bare_MiB": peak_bare,
        }
        result[name] = row
        lines.append(
            f"| {name} | {t_step:.3f} | {row['ms_per_frame']:.2f} | {t_bare:.3f} "
            f"| {row['step_over_bare']:.3f} | {peak_step:.0f} | {peak_bare:.0f} |"
        )
    report.part("reweight", result, lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "bench/out/gpu_check"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--quick", action="store_true", help="tiny settings (a dry run)")
    parser.add_argument("--budget-s", type=float, default=480.0, help="stop starting parts")
    parser.add_argument("--md-steps", type=int, default=100)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--parts", default="md,pipeline,ase,reweight")
    parser.add_argument("--ase-steps", type=int, default=40)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    begin = time.perf_counter()
    device = torch.device(args.device)
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(2))
    out = Path(args.out)
    report = Report(out)
    report.part("environment", environment(device), [f"`{json.dumps(environment(device))}`"])
    targets, entries = ti_targets(args.quick)
    points = state_points(targets)
    models = make_models(device, dtype, args.quick)
    steps = 4 if args.quick else args.md_steps
    parts = args.parts.split(",")

    def left() -> float:
        return args.budget_s - (time.perf_counter() - begin)

    if "md" in parts:
        part_md(report, models, points, device, dtype, steps, calls=3 if args.quick else 10)
    if "pipeline" in parts and left() > (20 if args.quick else 120):
        try:
            part_pipeline(report, entries, out, device, args.quick, timeout_s=max(left() - 60, 30))
        except subprocess.TimeoutExpired:
            report.part("pipeline", {"timed_out": True}, ["timed out (see pipeline.log)"])
    if "ase" in parts and left() > (5 if args.quick else 60):
        part_ase(report, models, points, device, dtype, 4 if args.quick else args.ase_steps)
    if "reweight" in parts and left() > (5 if args.quick else 30):
        frames_n = 8 if args.quick else args.frames
        part_reweight(report, models, targets, device, dtype, frames_n, min(args.chunk, frames_n))
    report.part("done", {"wall_s": time.perf_counter() - begin}, [f"{utc()}"])


if __name__ == "__main__":
    main()
