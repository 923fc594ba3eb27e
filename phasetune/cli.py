"""Command-line entry points: thin ``@hydra.main`` wrappers over plain functions."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from phasetune.configs import restores_process_state, torch_dtype
from phasetune.potentials.base import sampling_copy
from phasetune.sampling.frames import Frames
from phasetune.sampling.sampler import StatePoint, sample_state_points
from phasetune.structures import build_structure

log = logging.getLogger(__name__)


def state_points_from_config(entries) -> list[StatePoint]:
    """Build :class:`StatePoint`s from config entries (phase, element, lattice_A, n_atoms, T, P)."""
    required = ("name", "phase", "element", "lattice_A", "n_atoms", "temperature_K")
    points = []
    for k, entry in enumerate(entries):
        entry = dict(entry)
        missing = [key for key in required if key not in entry]
        if missing:
            raise ValueError(f"state_points[{k}] is missing {', '.join(missing)}")
        atoms = build_structure(
            entry["phase"],
            element=entry["element"],
            lattice_A=float(entry["lattice_A"]),
            n_atoms=int(entry["n_atoms"]),
            c_over_a=entry.get("c_over_a"),
        )
        points.append(
            StatePoint(
                name=str(entry["name"]),
                phase=entry["phase"],
                atoms=atoms,
                temperature_K=float(entry["temperature_K"]),
                pressure_GPa=float(entry.get("pressure_GPa", 0.0)),
                cell_mode=entry.get("cell_mode", "auto"),
            )
        )
    return points


def write_summary_csv(frames: Frames, path: Path) -> Path:
    """Per state point: set point, valid frames, and means of T, P, V/N, U/N, H/N."""
    n = frames.n_atoms_per_system.to(frames.volume.dtype)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "name",
                "phase",
                "T_set_K",
                "P_set_GPa",
                "valid_frames",
                "T_K",
                "P_GPa",
                "volume_per_atom_A3",
                "potential_energy_per_atom_eV",
                "enthalpy_per_atom_eV",
            ]
        )
        means = {
            name: frames.valid_mean(name)
            for name in ("temperature", "pressure", "volume", "potential_energy", "enthalpy")
        }
        for k, sp in enumerate(frames.state_points):
            writer.writerow(
                [
                    sp["name"],
                    sp["phase"],
                    sp["temperature_K"],
                    sp["pressure_GPa"],
                    int(frames.phase_ok[:, k].sum()),
                    f"{float(means['temperature'][k]):.3f}",
                    f"{float(means['pressure'][k]):.5f}",
                    f"{float(means['volume'][k] / n[k]):.5f}",
                    f"{float(means['potential_energy'][k] / n[k]):.6f}",
                    f"{float(means['enthalpy'][k] / n[k]):.6f}",
                ]
            )
    return path


def plot_frames(frames: Frames, path: Path) -> Path:
    """Traces of temperature, pressure, volume per atom and energy per atom per state point."""
    from matplotlib.figure import Figure  # no global backend: notebooks keep theirs

    n = frames.n_atoms_per_system.to(frames.volume.dtype)
    fig = Figure(figsize=(11, 7))
    axes = fig.subplots(2, 2, sharex=True)
    series = [
        ("temperature (K)", frames.temperature),
        ("pressure (GPa)", frames.pressure),
        ("volume per atom (Å³)", frames.volume / n),
        ("potential energy per atom (eV)", frames.potential_energy / n),
    ]
    for ax, (label, values) in zip(axes.flat, series, strict=True):
        for k, sp in enumerate(frames.state_points):
            ax.plot(frames.step, values[:, k], label=sp["name"], lw=1)
            bad = ~frames.phase_ok[:, k]
            if bool(bad.any()):
                ax.plot(frames.step[bad], values[bad, k], "x", color="red")
        ax.set_ylabel(label)
    for ax in axes[1]:
        ax.set_xlabel("MD step")
    axes[0, 0].legend(fontsize=7, ncol=2)
    fig.suptitle("phasetune-sample (red × = frame flagged by the phase check)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


@restores_process_state
def sample(cfg: DictConfig, output_dir: str | Path) -> Frames:
    """Sample the configured state points; write frames.h5, summary.csv and traces.png."""
    output_dir = Path(output_dir)
    torch.set_num_threads(int(cfg.threads))
    dtype = torch_dtype(cfg.dtype)
    model = instantiate(cfg.model, device=cfg.device, dtype=dtype)
    settings = instantiate(cfg.sampler)
    points = state_points_from_config(cfg.state_points)
    output_dir.mkdir(parents=True, exist_ok=True)
    if settings.frames_path is None:  # keep frames on disk as they come: a crash loses few
        settings.frames_path = str(output_dir / "frames.h5")
    n_atoms = sum(len(p.atoms) for p in points)
    log.info("sampling %d state points (%d atoms) in one batch", len(points), n_atoms)
    frames, _ = sample_state_points(
        sampling_copy(model), points, settings, device=cfg.device, dtype=dtype
    )
    frames.metadata["config"] = OmegaConf.to_container(cfg, resolve=True)
    frames.save(output_dir / "frames.h5")
    write_summary_csv(frames, output_dir / "summary.csv")
    if cfg.plot:
        plot_frames(frames, output_dir / "traces.png")
    for line in frames.summary():
        print(line)
    print(f"frames, summary.csv and traces.png written to {output_dir}")
    return frames


def preflight_sample(cfg: DictConfig) -> None:
    """Every value of a ``sample`` config checked without running anything (ConfigError)."""
    from phasetune.config_check import ConfigError
    from phasetune.preflight import build_settings, check_common

    check_common(cfg)
    build_settings("sampler", cfg.sampler)
    try:
        state_points_from_config(cfg.state_points)
    except (ValueError, TypeError, KeyError) as err:
        raise ConfigError(f"state_points: {err}") from None
