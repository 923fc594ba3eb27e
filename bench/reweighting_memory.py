"""Peak memory and time of one DiffTRe reweighting step (FEP forward + backward) vs. frames.

    python -m bench.reweighting_memory --frames 16 64 256 --chunk 8 --threads 1

A small seeded MACE (``build_mace``, Ti, 8x0e, 2 interactions, r_max 4.5 Å) as the live
model; N frames of a 54-atom bcc Ti cell (a = 3.3 Å) rattled by Gaussian displacements of
σ = 0.05 Å (fixed seed), reference energies U_ref from the torch-sim sampling copy, then the
live weights scaled by 1.002 (T = 1200 K; this smooth random model varies so little between
frames that the FEP weights stay nearly uniform, relative ESS ≈ 1; the gradient check below
adds an ensemble with far-from-uniform weights).

Methods, each configuration in a fresh subprocess:

* ``bare``: one batched forward of Σ_i U_i over all N frames, then backward (no FEP); timed
  in the first worker of each N after that worker's peak was read; its own memory only with
  ``--bare-memory`` (one more worker per N).
* ``one-graph``: the old path, ``reweighted_gibbs_change(model, ensemble, chunk_frames=c,
  keep_graph=True).delta_g_eV.backward()``: one autograd graph over all N frames (the
  forward runs in torch-sim batches of c frames, but every batch's graph stays alive until
  the backward); c = ``all`` (always run) is one batch of N frames.
* ``chunked``: the library default, ``reweighted_gibbs_change(model, ensemble,
  chunk_frames=c).delta_g_eV.backward()`` (``keep_graph=False``,
  :class:`phasetune.learn.difftre._ChunkedFEP`): energies of all frames without a graph →
  FEP weights w_i; the backward recomputes U per chunk of c frames with grad and
  accumulates Σ_i w_i ∂U_i/∂θ / n_atoms (the exact FEP gradient, ⟨∂U/∂θ⟩_θ / n_atoms), so
  only one chunk's graph is alive at a time.

"peak extra MiB" is ``ru_maxrss`` at the end of the step minus ``ru_maxrss`` after the model,
the frames and a one-frame warm-up forward+backward (so imports and lazy initialisation do
not count). Workers run with ``MALLOC_MMAP_THRESHOLD_=65536`` so that large tensors are
mmapped and their memory returns to the OS on free (RSS follows the live tensors). Times are
the median of ``--repeats`` steps (the first, memory-measuring one included), as process CPU
time (robust on a shared machine; equal to compute time at one thread) and wall time.

A verification worker checks that the ``chunked`` gradient (and ΔG/N) equals the
``one-graph`` one with a single chunk of all frames to rtol 1e-10, for the benchmark's
ensemble and for one with far-from-uniform weights. A summary table gives, per N, the
``chunked`` step's time over the bare forward+backward (the goal is ≤ 1.3) and its peak
extra memory.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

TEMPERATURE_K = 1200.0
LATTICE_A = 3.3
N_ATOMS = 54
RATTLE_A = 0.05
SEED = 7
PERTURBATION = 1.002


# --------------------------------------------------------------------------- worker side
def _setup(
    n_frames: int,
    threads: int,
    *,
    perturbation: float = PERTURBATION,
    temperature_K: float = TEMPERATURE_K,
):
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    # mace must be imported before e3nn: mace sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 on
    # import, without which e3nn 0.4.4's own torch.load of its constants fails under
    # torch >= 2.6; build_mace imports e3nn first, so a fresh process needs this
    import mace  # noqa: F401

    from phasetune.learn.difftre import StatePointEnsemble, parameter_snapshot
    from phasetune.potentials.base import sampling_copy
    from phasetune.potentials.evaluation import frame_energies
    from phasetune.potentials.mace import MacePotential, build_mace
    from phasetune.sampling.frames import Frames
    from phasetune.structures import build_structure

    module = build_mace(atomic_numbers=[22], atomic_energies_eV=[-1.5], seed=1)
    live = MacePotential(module, device="cpu", dtype=torch.float64)
    atoms = build_structure("bcc", element="Ti", lattice_A=LATTICE_A, n_atoms=N_ATOMS)
    assert len(atoms) == N_ATOMS, len(atoms)
    rng = np.random.default_rng(SEED)
    shifts = rng.normal(0.0, RATTLE_A, size=(n_frames, N_ATOMS, 3))
    configurations = []
    for shift in shifts:
        rattled = atoms.copy()
        rattled.positions = atoms.positions + shift
        configurations.append(rattled)
    frames = Frames.from_atoms(
        configurations,
        state_point={"name": "ti/bcc", "phase": "bcc", "temperature_K": TEMPERATURE_K},
    )
    frozen = sampling_copy(live)
    with torch.no_grad():
        # one frame at a time: keeps the baseline peak (read after setup) small
        reference = frame_energies(frozen, frames, chunk_frames=1)
    frames.potential_energy = reference.clone()
    ensemble = StatePointEnsemble(
        name="ti/bcc",
        target="ti",
        phase="bcc",
        temperature_K=temperature_K,
        pressure_GPa=0.0,
        frames=frames,
        reference_energy=reference[:, 0].clone(),
        reference_params=parameter_snapshot(live),
    )
    del frozen
    with torch.no_grad():
        for p in live.parameters():
            p.mul_(perturbation)
    return live, ensemble


def _zero_grad(model) -> None:
    for p in model.parameters():
        p.grad = None


def _step(method: str, model, ensemble, chunk: int):
    """One forward+backward; returns ΔG/N (or Σ U for bare) as a float."""
    from phasetune.learn.difftre import reweighted_gibbs_change
    from phasetune.potentials.evaluation import frame_energies

    _zero_grad(model)
    if method == "bare":
        energy = frame_energies(model, ensemble.frames, chunk_frames=ensemble.frames.n_frames)
        total = energy.sum()
        total.backward()
        return float(total)
    if method in ("one-graph", "chunked"):
        rg = reweighted_gibbs_change(
            model, ensemble, chunk_frames=chunk, keep_graph=method == "one-graph"
        )
        rg.delta_g_eV.backward()
        return float(rg.delta_g_eV)
    raise ValueError(method)


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _timed_step(method: str, model, ensemble, chunk: int) -> tuple[float, float]:
    """(wall, CPU) seconds of one step; CPU time (this process) is the robust one on a
    shared machine, and equals the compute time at one thread."""
    wall, cpu = time.perf_counter(), time.process_time()
    _step(method, model, ensemble, chunk)
    return time.perf_counter() - wall, time.process_time() - cpu


def _timed(method: str, model, ensemble, chunk: int, repeats: int) -> list[tuple[float, float]]:
    times = []
    for _ in range(repeats):
        gc.collect()
        times.append(_timed_step(method, model, ensemble, chunk))
    return times


def _medians(times: list[tuple[float, float]] | None) -> tuple[float | None, float | None]:
    if not times:
        return None, None
    return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)


def worker(config: dict) -> dict:
    """Peak extra memory of one step of one method; then its time, and the bare time."""
    import torch

    from phasetune.potentials.evaluation import frame_energies
    from phasetune.thermo import relative_effective_sample_size, reweighting_weights

    n, method, repeats = config["frames"], config["method"], config["repeats"]
    chunk = n if config["chunk"] == "all" else int(config["chunk"])
    model, ensemble = _setup(n, config["threads"])
    # warm-up: one frame forward+backward (lazy initialisation, kernels), not counted
    frame_energies(model, ensemble.frames, frame_indices=torch.arange(1)).sum().backward()
    _zero_grad(model)
    gc.collect()
    base_peak, base_rss = _maxrss_mib(), _rss_mib()
    times = [_timed_step(method, model, ensemble, chunk)]
    peak = _maxrss_mib()
    times += _timed(method, model, ensemble, chunk, repeats - 1)
    # the bare batched forward+backward over the same frames (after the peak is read)
    bare = _timed("bare", model, ensemble, n, repeats) if config.get("time_bare") else None
    with torch.no_grad():
        u = frame_energies(model, ensemble.frames)[:, 0]
        weights = reweighting_weights(u - ensemble.reference_energy, ensemble.kT_eV)
    return {
        **config,
        "baseline_maxrss_MiB": base_peak,
        "baseline_rss_MiB": base_rss,
        "peak_extra_MiB": peak - base_peak,
        "wall_s": _medians(times)[0],
        "cpu_s": _medians(times)[1],
        "times_wall_cpu_s": times,
        "bare_wall_s": _medians(bare)[0],
        "bare_cpu_s": _medians(bare)[1],
        "bare_times_wall_cpu_s": bare,
        "relative_ess": float(relative_effective_sample_size(weights)),
        "torch_threads": torch.get_num_threads(),
    }


def verify(config: dict) -> dict:
    """Gradients of the ``chunked`` path (library default) vs. the ``one-graph`` path with
    one chunk of all frames, for the benchmark's ensemble and for one with far-from-uniform
    weights (weights ×1.1, T = 50 K)."""
    import torch

    from phasetune.learn.difftre import reweighted_gibbs_change

    n, chunk = config["frames"], int(config["chunk"])
    out = {**config, "cases": []}
    for label, perturbation, temperature in (
        ("benchmark ensemble", PERTURBATION, TEMPERATURE_K),
        ("non-uniform weights", 1.1, 50.0),
    ):
        model, ensemble = _setup(
            n, config["threads"], perturbation=perturbation, temperature_K=temperature
        )
        params = [p for p in model.parameters() if p.requires_grad]

        def grads(method: str, c: int, model=model, ensemble=ensemble, params=params):
            value = _step(method, model, ensemble, c)
            return value, [p.grad.detach().clone() for p in params]

        ref_value, ref = grads("one-graph", n)  # one graph over all frames, one chunk
        with torch.no_grad():
            ess = reweighted_gibbs_change(model, ensemble, chunk_frames=n).relative_ess
        case = {
            "label": label,
            "perturbation": perturbation,
            "temperature_K": temperature,
            "relative_ess": ess,
            "n_parameter_tensors": len(params),
            "grad_norm": float(sum(float(g.pow(2).sum()) for g in ref) ** 0.5),
        }
        for name, method in (("chunked", "chunked"),):
            value, got = grads(method, chunk)
            worst = max(
                float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))
                for a, b in zip(got, ref, strict=True)
            )
            # rtol 1e-10 elementwise, with an atol of 1e-14 of the tensor's largest entry
            close = all(
                bool(((a - b).abs() <= 1e-10 * b.abs() + 1e-14 * b.abs().max()).all())
                for a, b in zip(got, ref, strict=True)
            )
            case[name] = {
                "value_diff_eV": abs(value - ref_value),
                "max_rel_grad_diff": worst,
                "rtol_1e-10": close,
            }
        out["cases"].append(case)
    return out


# --------------------------------------------------------------------------- driver side
def _run(config: dict, threads: int) -> dict:
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = str(threads)
    env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    result = subprocess.run(
        [sys.executable, "-m", "bench.reweighting_memory", "--worker", json.dumps(config)],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        raise RuntimeError(f"worker {config} failed (exit {result.returncode})")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument(
        "--chunk", nargs="+", default=["8"], help="chunk sizes (the unchunked 'all' always runs)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1, help="timed steps per config")
    parser.add_argument("--verify-frames", type=int, default=16)
    parser.add_argument(
        "--bare-memory", action="store_true", help="also measure the bare step's memory"
    )
    parser.add_argument("--json", default=None, help="also write all results to this file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        config = json.loads(args.worker)
        print(json.dumps(verify(config) if config["method"] == "verify" else worker(config)))
        return

    import torch

    # the one-graph path with one chunk of all frames ("all") is always measured
    int_chunks = list(dict.fromkeys(str(int(c)) for c in args.chunk if c != "all"))
    chunks = [*int_chunks, "all"]
    started = datetime.datetime.now(datetime.UTC)
    print(
        f"# reweighting memory: {N_ATOMS}-atom bcc Ti, small MACE, float64, "
        f"{args.threads} thread(s), started {started:%Y-%m-%d %H:%M} UTC"
    )
    print(
        f"# machine: {os.cpu_count()} CPUs ({_cpu_model()}), Python {platform.python_version()}, "
        f"torch {torch.__version__}"
    )
    results = []
    for n in args.frames:
        configs = [("one-graph", c) for c in chunks] + [("chunked", c) for c in int_chunks]
        if args.bare_memory:
            configs.insert(0, ("bare", "all"))
        for k, (method, chunk) in enumerate(configs):
            config = {
                "frames": n,
                "method": method,
                "chunk": chunk,
                "threads": args.threads,
                "repeats": args.repeats,
                "time_bare": k == 0,
            }
            results.append(_run(config, args.threads))
            r = results[-1]
            print(
                f"#   N={n:4d} {method:9s} chunk={chunk:>4s}: "
                f"peak +{r['peak_extra_MiB']:.1f} MiB, "
                f"step {r['cpu_s']:.3f} s CPU, {r['wall_s']:.3f} s wall "
                f"(baseline maxrss {r['baseline_maxrss_MiB']:.0f} MiB)",
                flush=True,
            )
    checks = None
    if int_chunks:
        checks = _run(
            {
                "frames": args.verify_frames,
                "method": "verify",
                "chunk": int_chunks[0],
                "threads": args.threads,
            },
            args.threads,
        )
    bare = {r["frames"]: r for r in results if r["bare_cpu_s"] is not None}
    ess = sorted(r["relative_ess"] for r in results)
    print()
    print(
        "| N frames | method | chunk | peak extra memory (MiB) | step CPU (s) "
        "| bare fwd+bwd CPU (s) | step / bare (CPU) | step wall (s) | bare wall (s) |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        b = bare[r["frames"]]
        print(
            f"| {r['frames']} | {r['method']} | {r['chunk']} | {r['peak_extra_MiB']:.1f} "
            f"| {r['cpu_s']:.3f} | {b['bare_cpu_s']:.3f} | {r['cpu_s'] / b['bare_cpu_s']:.2f} "
            f"| {r['wall_s']:.3f} | {b['bare_wall_s']:.3f} |"
        )
    print()
    print(
        "| N frames | chunk | chunked peak extra memory (MiB) | one-graph (chunk all) peak "
        "extra memory (MiB) | chunked step / bare (CPU) | chunked step / bare (wall) "
        "| ≤ 1.3 (CPU) |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | :---: |")
    one_graph_all = {
        r["frames"]: r for r in results if r["method"] == "one-graph" and r["chunk"] == "all"
    }
    for r in results:
        if r["method"] != "chunked":
            continue
        b, g = bare[r["frames"]], one_graph_all[r["frames"]]
        ratio = r["cpu_s"] / b["bare_cpu_s"]
        print(
            f"| {r['frames']} | {r['chunk']} | {r['peak_extra_MiB']:.1f} "
            f"| {g['peak_extra_MiB']:.1f} | {ratio:.2f} "
            f"| {r['wall_s'] / b['bare_wall_s']:.2f} | {'yes' if ratio <= 1.3 else 'no'} |"
        )
    print(
        f"\nRelative ESS of the benchmarked ensembles: {ess[0]:.6f}–{ess[-1]:.6f}. Times: "
        f"median of {args.repeats} step(s), process CPU time and wall time; bare = one "
        "torch-sim batch of all N frames, backward of Σ U (no FEP), timed in the first "
        "worker of each N."
    )
    ok = True
    if checks is not None:
        print(
            f"\nGradient check (N = {checks['frames']}, chunk {checks['chunk']}) against the "
            "one-graph path with one chunk of all frames; rtol 1e-10 elementwise, "
            "atol 1e-14 × the tensor's largest entry:"
        )
        for case in checks["cases"]:
            print(
                f"- {case['label']} (weights ×{case['perturbation']}, T = "
                f"{case['temperature_K']:g} K, rel. ESS {case['relative_ess']:.3f}, "
                f"{case['n_parameter_tensors']} parameter tensors, |∇| = {case['grad_norm']:.3e}):"
            )
            for name in ("chunked",):
                c = case[name]
                ok = ok and c["rtol_1e-10"]
                print(
                    f"  - {name}: max |Δ∇| / max |∇| per tensor {c['max_rel_grad_diff']:.2e}, "
                    f"|ΔG/N diff| {c['value_diff_eV']:.2e} eV/atom, passes: {c['rtol_1e-10']}"
                )
    finished = datetime.datetime.now(datetime.UTC)
    elapsed = (finished - started).total_seconds()
    print(f"\n# finished {finished:%Y-%m-%d %H:%M:%S} UTC ({elapsed:.0f} s)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"results": results, "checks": checks}, handle, indent=1)
    if not ok:
        raise SystemExit("gradient check failed")


if __name__ == "__main__":
    main()
