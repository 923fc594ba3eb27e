"""A small, made-up titanium run directory, to show and test the analysis before a real run.

A fixture of ``titanium_analysis.ipynb`` (which imports it from this folder) and of
``tests/unit/report/test_analysis.py``, not part of the package.

Every model number it writes is invented (``"synthetic": true`` in ``summary.json``); the
layout is that of a real run (:mod:`phasetune.analysis`).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from phasetune.analysis.runs import load_diffusion_experiment
from phasetune.configs import CONFIG_DIR
from phasetune.report.rows import COLUMNS, met_verdict

_CONF = Path(CONFIG_DIR)


def _brownian_frames(
    d_m2_per_s: Sequence[float],
    temperatures_K: Sequence[float],
    *,
    n_atoms: int,
    n_frames: int,
    frame_fs: float,
    seed: int,
):
    """Frames of independent Brownian walkers, one liquid Ti system per temperature, with
    ⟨Δx²⟩ = 2DΔt per axis per frame (a made-up trajectory with a known D)."""
    import torch

    from phasetune.sampling.frames import Frames

    f64 = torch.float64
    n_sys = len(temperatures_K)
    box = (n_atoms / 0.0535) ** (1.0 / 3.0)  # liquid Ti: ≈ 0.0535 atoms/Å³
    g = torch.Generator().manual_seed(seed)
    sigma = torch.tensor([math.sqrt(2.0 * d * 1e5 * frame_fs) for d in d_m2_per_s], dtype=f64)
    sigma = sigma.repeat_interleave(n_atoms)[None, :, None]  # Å per frame and axis
    steps = torch.randn(n_frames - 1, n_sys * n_atoms, 3, generator=g, dtype=f64) * sigma
    start = torch.rand(1, n_sys * n_atoms, 3, generator=g, dtype=f64) * box
    positions = torch.cat([start, start + torch.cumsum(steps, dim=0)])
    cell = torch.eye(3, dtype=f64).mul(box).expand(n_frames, n_sys, 3, 3).clone()
    zeros = torch.zeros(n_frames, n_sys, dtype=f64)
    temperature = torch.tensor(list(temperatures_K), dtype=f64).expand(n_frames, n_sys).clone()
    stride = 125
    return Frames(
        positions=positions,
        cell=cell,
        potential_energy=zeros,
        kinetic_energy=zeros,
        volume=torch.linalg.det(cell),
        temperature=temperature,
        pressure=zeros,
        enthalpy=zeros,
        phase_ok=torch.ones(n_frames, n_sys, dtype=torch.bool),
        phase_fractions=torch.zeros(n_frames, n_sys, 4, dtype=f64),
        step=torch.arange(n_frames) * stride,
        system_idx=torch.arange(n_sys).repeat_interleave(n_atoms),
        atomic_numbers=torch.full((n_sys * n_atoms,), 22),
        masses=torch.full((n_sys * n_atoms,), 47.867, dtype=f64),
        state_points=[
            {
                "name": f"liquid_{t:.0f}K",
                "phase": "liquid",
                "temperature_K": float(t),
                "pressure_GPa": 0.0,
                "cell_mode": "isotropic",
            }
            for t in temperatures_K
        ],
        metadata={"timestep_fs": frame_fs / stride, "synthetic": True},
    )


def write_synthetic_ti_run(
    run_dir: str | Path,
    *,
    with_diffusion: bool = True,
    n_steps: int = 12,
    seed: int = 0,
) -> Path:
    """Write a small, MADE-UP titanium run directory (fake numbers, for demonstration and
    tests only), in the layout of a real ``phasetune experiment=ti_phase_diagram`` run.

    The targets (names, experimental T, P, tolerance) are the real ones of
    ``phasetune/conf/targets/ti_phase_diagram.yaml``; every model number is invented: "before" a
    foundation model too low by ≈ 150 K (hcp|bcc) and ≈ 250 K (bcc|liquid), "after" within a
    few K, a training history converging over ``n_steps`` steps with ESS-triggered re-samplings, and
    (``with_diffusion``) Brownian-walker frames ``diffusion/{before,after}/liquid.h5`` whose D
    is 0.75× and 1.0× Horbach's. ``summary.json`` says ``"synthetic": true``.

    Returns:
        ``run_dir``.
    """
    import yaml

    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    targets = yaml.safe_load((_CONF / "targets" / "ti_phase_diagram.yaml").read_text())["targets"]
    rows = []
    start_shift = []
    for t in targets:
        t_exp, p = float(t["temperature_K"]), float(t["pressure_GPa"])
        solid = t["phases"][1] != "liquid"
        shift = (-150.0 + 6.0 * p) if solid else (-250.0 - 10.0 * p)
        start_shift.append(shift)
        after = t_exp + float(rng.normal(0.0, 4.0))
        rows.append(
            {
                "target": t["name"],
                "phases": "|".join(t["phases"]),
                "pressure_GPa": p,
                "experiment_K": t_exp,
                "tolerance_K": float(t["tolerance_K"]),
                "before_K": t_exp + shift + float(rng.normal(0.0, 5.0)),
                "before_error_K": 15.0 if solid else 10.0,
                "reweighted_K": t_exp + float(rng.normal(0.0, 3.0)),
                "reweighted_error_K": 12.0 if solid else 8.0,
                "after_K": after,
                "after_error_K": 15.0 if solid else 10.0,
                "after_method": "free_energy" if solid else "coexistence",
                "met": met_verdict(
                    after_K=after,
                    after_error_K=15.0 if solid else 10.0,
                    experiment_K=t_exp,
                    tolerance_K=float(t["tolerance_K"]),
                ),
                "source": "SYNTHETIC EXAMPLE (made-up model numbers); target: " + t["source"],
            }
        )
    with open(path / "report.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    (path / "report.json").write_text(json.dumps(rows, indent=2))

    # a made-up history: T* relaxes to the target; the ESS decays as the parameters move
    # away from the sampling ones and is reset by a re-sampling once it falls below 0.9
    delta_s_meV_per_K = {True: 0.08, False: 0.11}  # |Δs| per atom, made up
    history = []
    ess_age = 0
    resamplings = 0
    for step in range(n_steps):
        if history and min(v for k, v in history[-1].items() if k.startswith("ess/")) < 0.9:
            resamplings += 1
            ess_age = 0
        entry: dict[str, float] = {"step": float(step), "epoch": 0.0}
        loss = 0.0
        for t, shift in zip(targets, start_shift, strict=True):
            solid = t["phases"][1] != "liquid"
            off = shift * math.exp(-step / (n_steps / 4.0)) + float(rng.normal(0.0, 2.0))
            entry[f"dg_meV/{t['name']}"] = delta_s_meV_per_K[solid] * off  # Δg = Δs (T* − T)
            entry[f"T_shift_K/{t['name']}"] = off
            entry[f"T_implied_K/{t['name']}"] = float(t["temperature_K"]) + off
            loss += (off / float(t["tolerance_K"])) ** 2
            for phase in t["phases"]:
                ess = math.exp(-0.04 * ess_age) - abs(float(rng.normal(0.0, 0.005)))
                entry[f"ess/{t['name']}/{phase}"] = min(1.0, ess)
        entry["loss"] = loss
        entry["resamplings"] = float(resamplings)
        history.append(entry)
        ess_age += 1
    logs = path / "logs" / "version_0"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=sorted(history[0]))
        writer.writeheader()
        writer.writerows(history)

    if with_diffusion:
        experiment = load_diffusion_experiment()
        temperatures = [e["temperature_K"] for e in experiment]
        for k, (label, factor) in enumerate((("before", 0.75), ("after", 1.0))):
            frames = _brownian_frames(
                [factor * e["D_m2_per_s"] for e in experiment],
                temperatures,
                n_atoms=64,
                n_frames=160,
                frame_fs=100.0,
                seed=seed + 1 + k,
            )
            frames.save(path / "diffusion" / label / "liquid.h5")
    summary = {
        "synthetic": True,
        "note": "SYNTHETIC EXAMPLE: made-up numbers, not a titanium run",
        "rows": rows,
        "steps": n_steps,
        "resamplings": resamplings,
    }
    (path / "summary.json").write_text(json.dumps(summary, indent=2))
    (path / "SYNTHETIC_EXAMPLE.txt").write_text(
        "This directory was written by notebooks/synthetic_ti_run.py: every model "
        "number in it is made up (a demonstration of the analysis, not a titanium run).\n"
    )
    return path
