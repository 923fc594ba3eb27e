"""The titanium experiment composes, validates, and builds its pieces (no GPU, no network)."""

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from phasetune.cli import CONFIG_DIR
from phasetune.learn.module import DiffTReModule
from phasetune.potentials.mace import ModelNotFoundError, build_mace
from phasetune.targets import load_targets
from phasetune.train import build_model, resolve_device

HCP_BCC_K = [1154.66, 1124.5, 1094.4, 1064.3, 1034.2, 1005.0]
BCC_LIQUID_K = [1940.52, 1979.41, 2011.30, 2041.43, 2071.56, 2092.93]


def _compose(overrides):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=["experiment=ti_phase_diagram", *overrides])


def test_ti_experiment_composes_and_validates(tmp_path, monkeypatch):
    cfg = _compose([])
    targets = load_targets(OmegaConf.to_container(cfg.targets, resolve=True))
    assert len(targets) == 12
    state_points = {(t.name, phase) for t in targets for phase in t.phases}
    assert len(state_points) == 24
    hcp_bcc = [t for t in targets if t.phases == ("hcp", "bcc")]
    bcc_liquid = [t for t in targets if t.phases == ("bcc", "liquid")]
    assert [t.temperature_K for t in hcp_bcc] == HCP_BCC_K
    assert [t.temperature_K for t in bcc_liquid] == BCC_LIQUID_K
    assert [t.pressure_GPa for t in hcp_bcc] == [0, 1, 2, 3, 4, 5]
    # hcp–bcc is −30.1 K/GPa (experiment)
    assert (HCP_BCC_K[-1] - HCP_BCC_K[0]) / 5 == pytest.approx(-29.93, abs=0.05)
    assert len(targets[0].atoms("hcp")) >= 576 and len(targets[-1].atoms("liquid")) >= 576
    # solid|solid by free energies, solid|liquid by coexistence
    settings = instantiate(cfg.anchor.settings)
    assert settings.method == "auto" and settings.coexistence.timestep_fs == 4.0
    sampler = instantiate(cfg.sampler)
    assert sampler.timestep_fs * sampler.production_steps == pytest.approx(120_000)  # 120 ps
    assert [d["D_m2_per_s"] for d in cfg.validation.diffusion] == [
        4.99e-9,
        5.29e-9,
        5.69e-9,
        5.99e-9,
    ]
    assert cfg.model.name == "medium-mpa-0" and cfg.dtype == "float32"
    assert resolve_device(cfg) == "cpu"

    # the loss config is accepted by the module, with a tiny Ti MACE file in place
    path = tmp_path / "ti.model"
    torch.save(build_mace(atomic_numbers=[22]), path)
    cfg = _compose(["model=mace_file", f"model.path={path}"])
    model = instantiate(cfg.model, device="cpu", dtype=torch.float64)
    anchors = [type("A", (), {"delta_g_eV": 0.0, "delta_s_eV_per_K": 1e-4})() for _ in targets]
    module = DiffTReModule(model, targets, anchors, **OmegaConf.to_container(cfg.loss))
    assert module.offset_weight_decay == pytest.approx(1e-2)
    assert model.lora is None
    # LoRA from the command line: adapters of rank 4 on the linear layers, and only they train
    cfg = _compose(
        ["model=mace_file", f"model.path={path}", "model.lora_rank=4", "loss.trainable=lora"]
    )
    model = instantiate(cfg.model, device="cpu", dtype=torch.float64)
    module = DiffTReModule(model, targets, anchors, **OmegaConf.to_container(cfg.loss))
    assert model.lora.rank == 4
    assert module.trainable and all(n.startswith("lora.") for n in module.trainable)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == set(module.trainable)

    # offline with nothing cached: a clear message, not a traceback from urllib
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty_cache"))
    cfg = _compose(["model.download=false"])
    with pytest.raises(ModelNotFoundError, match="model.path"):
        build_model(cfg, "cpu", torch.float64)


def test_gpu_trainer_selects_cuda():
    cfg = _compose(["trainer=gpu"])
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.max_steps == 1000
    if torch.cuda.is_available():
        assert resolve_device(cfg) == "cuda"
    else:
        with pytest.raises(RuntimeError, match="no CUDA device"):
            resolve_device(cfg)
