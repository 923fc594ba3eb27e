"""Direct check of a fine-tuning run's reweighted Δg change, by λ-integration (bench).

    .venv/bin/python -m bench.delta_g_change_check RUN_DIR [--target NAME] \
        [--lambdas 0 0.5 1] [--production-steps 3000] [--threads 2]

DiffTRe estimates each phase's change g(θ₁) − g(θ₀) at a target (T, P) by a chain of short
FEP/BAR rounds. This script measures the same changes without reweighting
(:func:`phasetune.free_energy.model_change.gibbs_change_between_models`: thermodynamic
integration along H(λ) = (1 − λ) U_θ₀ + λ U_θ₁, and BAR between its nodes). Δg's change is
that of the high-T phase minus that of the low-T phase; with the run's anchor it gives the
T* that the change implies, T* = T + Δg/Δs, to set beside the run's reweighted and
re-measured T*.

θ₀ is the run's base model (its ``.hydra/config.yaml``), θ₁ its ``trained_model.pt``; the
target, structures and MD settings are the run's, with a longer production. Writes
``RUN_DIR/delta_g_change_check_<target>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from phasetune.free_energy.model_change import gibbs_change_between_models
from phasetune.potentials.base import sampling_copy
from phasetune.sampling.sampler import StatePoint
from phasetune.targets import load_targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--target", default=None, help="target name (default: the melting one)")
    parser.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    parser.add_argument("--production-steps", type=int, default=3000)
    parser.add_argument("--equilibration-steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = OmegaConf.load(args.run_dir / ".hydra" / "config.yaml")
    dtype = {"float32": torch.float32, "float64": torch.float64}[cfg.dtype]
    base = instantiate(cfg.model, device="cpu", dtype=dtype)
    trained = instantiate(cfg.model, device="cpu", dtype=dtype)
    trained.load_state_dict(
        torch.load(args.run_dir / "trained_model.pt", map_location="cpu", weights_only=True)
    )
    targets = load_targets(OmegaConf.to_container(cfg.targets, resolve=True))
    target = next(t for t in targets if (t.name == args.target if args.target else t.is_melting))
    ckpt = torch.load(
        args.run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    anchor = next(a for a in ckpt["phasetune"]["anchors"] if a["target"] == target.name)
    report = json.loads((args.run_dir / "report.json").read_text())
    row = next(r for r in report if r["target"] == target.name)

    settings = instantiate(cfg.sampler)
    settings.production_steps = args.production_steps
    if args.equilibration_steps is not None:
        settings.equilibration_steps = args.equilibration_steps
        settings.melt_steps = min(settings.melt_steps, args.equilibration_steps)
    settings.seed, settings.progress, settings.frames_path = args.seed, False, None
    points = [
        StatePoint(
            name=phase,
            phase=phase,
            atoms=target.atoms(phase),
            temperature_K=target.temperature_K,
            pressure_GPa=target.pressure_GPa,
        )
        for phase in target.phases
    ]
    print(
        f"{target.name}: {', '.join(f'{p.phase} {len(p.atoms)} atoms' for p in points)} at "
        f"{target.temperature_K} K, {target.pressure_GPa} GPa, λ = {args.lambdas}, "
        f"{settings.equilibration_steps} + {settings.production_steps} steps of "
        f"{settings.timestep_fs} fs",
        flush=True,
    )
    start = time.perf_counter()
    low, high = gibbs_change_between_models(
        sampling_copy(base),
        sampling_copy(trained),
        points,
        settings,
        lambdas=args.lambdas,
        dtype=dtype,
    )
    wall_s = time.perf_counter() - start
    for result in (low, high):
        print(" ", result.describe())
    change = high.ti_eV - low.ti_eV
    change_err = math.hypot(high.ti_error_eV, low.ti_error_eV)
    ds = anchor["delta_s_eV_per_K"]
    rew_change = (row["reweighted_K"] - target.temperature_K) * ds - anchor["delta_g_eV"]
    implied = target.temperature_K + (anchor["delta_g_eV"] + change) / ds
    implied_err = math.hypot(anchor["delta_g_error_eV"], change_err) / ds
    print(
        f"Δg change, {high.name} − {low.name}: direct {1e3 * change:+.2f} ± "
        f"{1e3 * change_err:.2f} meV/atom, reweighted in the run {1e3 * rew_change:+.2f}\n"
        f"T* from the anchor + the direct change: {implied:.0f} ± {implied_err:.0f} K; the run "
        f"said {row['reweighted_K']:.0f} K reweighted, {row['after_K']:.0f} ± "
        f"{row['after_error_K']:.0f} K re-measured; {wall_s:.0f} s"
    )
    out = args.run_dir / f"delta_g_change_check_{target.name}.json"
    phases = {
        r.name: {
            "mean_delta_u_eV": r.mean_delta_u_eV.tolist(),
            "mean_error_eV": r.mean_error_eV.tolist(),
            "n_valid_frames": r.n_valid_frames.tolist(),
            "ti_eV": r.ti_eV,
            "ti_error_eV": r.ti_error_eV,
            "bar_eV": r.bar_eV,
            "bar_error_eV": r.bar_error_eV,
        }
        for r in (low, high)
    }
    result = {
        "target": target.name,
        "lambdas": args.lambdas,
        "production_steps": args.production_steps,
        "wall_s": wall_s,
        "phases": phases,
        "change_eV": change,
        "change_error_eV": change_err,
        "reweighted_change_eV": rew_change,
        "anchor_delta_g_eV": anchor["delta_g_eV"],
        "delta_s_eV_per_K": ds,
        "implied_T_K": implied,
        "implied_T_error_K": implied_err,
        "reweighted_T_K": row["reweighted_K"],
        "remeasured_T_K": row["after_K"],
        "remeasured_T_error_K": row["after_error_K"],
    }
    out.write_text(json.dumps(result, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    main()
