"""``phasetune export``: the fine-tuned model as files other tools load.

    phasetune export outputs/train/<run>            # → outputs/train/<run>/export/
    phasetune export outputs/train/<run> --out DIR

For a MACE model: ``finetuned.model``, a standard whole-model MACE file (load it with
``mace.calculators.MACECalculator(model_paths=...)`` or torch-sim's ``MaceModel``), and
``finetuned_state_dict.pt``, the weights alone with the base model's name and SHA-256
(load with ``torch.load(..., weights_only=True)``). Other potentials get the state-dict file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from phasetune.configs import torch_dtype
from phasetune.potentials.fingerprint import model_fingerprint


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def export_model(
    model: torch.nn.Module, out_dir: str | Path, *, metadata: dict | None = None
) -> dict[str, Path]:
    """Write ``model`` (and, for MACE, its raw module as a .model file) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    raw = getattr(model, "model", None)
    is_mace = raw is not None and hasattr(raw, "atomic_numbers")
    # MACE: the plain e3nn module with LoRA adapters (if any) merged in, built once; its
    # weights are what a plain (LoRA-free, e3nn) MacePotential holds under "model."
    module = model.plain_module().cpu() if is_mace else None
    weights = (
        {f"model.{k}": v for k, v in module.state_dict().items()} if is_mace else model.state_dict()
    )
    record = {
        "state_dict": {k: v.detach().cpu() for k, v in weights.items()},
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "fingerprint": model_fingerprint(model),
        "base_model": getattr(model, "source", ""),
        "base_model_sha256": getattr(model, "source_sha256", ""),
        "metadata": json.loads(json.dumps(metadata or {}, default=str)),
    }
    files["state_dict"] = out / "finetuned_state_dict.pt"
    _atomic_save(record, files["state_dict"])
    if is_mace:
        for p in module.parameters():
            p.requires_grad_(False)
        files["model"] = out / "finetuned.model"
        _atomic_save(module, files["model"])
    return files


def export_run(run_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Rebuild a finished run's model from its config and trained weights, and export it."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    run = Path(run_dir)
    config, weights = run / ".hydra" / "config.yaml", run / "trained_model.pt"
    for needed in (config, weights):
        if not needed.is_file():
            raise FileNotFoundError(
                f"{needed} not found: give the output directory of a finished `phasetune` run"
            )
    cfg = OmegaConf.load(config)
    dtype = torch_dtype(cfg.get("dtype", "float64"))
    model = instantiate(cfg.model, device="cpu", dtype=dtype)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    targets = OmegaConf.to_container(cfg.get("targets"), resolve=True)
    return export_model(
        model, out_dir if out_dir is not None else run / "export", metadata={"targets": targets}
    )


def export_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="phasetune export", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", help="output directory of a finished `phasetune` run")
    parser.add_argument("--out", default=None, help="where to write (default: RUN_DIR/export)")
    args = parser.parse_args(argv)
    try:
        files = export_run(args.run_dir, args.out)
    except (FileNotFoundError, ValueError) as err:
        print(f"phasetune export: {err}", file=sys.stderr)
        return 2
    for kind, path in files.items():
        print(f"{kind}: {path}")
    if "model" not in files:
        print(
            "no .model file: the run's model is not MACE (a .model is a MACE whole-model file); "
            "finetuned_state_dict.pt holds its fine-tuned parameters, to load with "
            "load_state_dict into the model class it names"
        )
    return 0
