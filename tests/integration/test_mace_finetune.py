"""MACE in phasetune: loading, the live/sampling pair, chunked reweighting, one optimizer
step, export and reload. A tiny MACE built with ``mace.modules`` stands in for a foundation
model (no network here)."""

import math
from functools import partial

import pytest
import torch

from phasetune.export import export_model
from phasetune.learn.data import StatePointDataModule
from phasetune.learn.difftre import reweighted_gibbs_change
from phasetune.learn.module import DiffTReModule, select_trainable
from phasetune.learn.optimizers import OffsetAdam
from phasetune.potentials.base import refresh_sampling_copy, sampling_copy
from phasetune.potentials.evaluation import frame_energies
from phasetune.potentials.mace import (
    MacePotential,
    ModelNotFoundError,
    build_mace,
    foundation_checkpoint,
    mace_potential,
)
from phasetune.structures import build_structure
from phasetune.thermo import free_energy_perturbation

TI = 22


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    module = build_mace(
        atomic_numbers=[TI], atomic_energies_eV=[-1.5], hidden_irreps="8x0e", seed=1
    )
    path = tmp_path_factory.mktemp("model") / "tiny_ti.model"
    torch.save(module, path)
    return path


def _state(model, structures):
    import torch_sim as ts

    return ts.io.atoms_to_state(structures, device=model.device, dtype=model.dtype)


def _rattled(phase, lattice_A, n, seed):
    atoms = build_structure(phase, element="Ti", lattice_A=lattice_A, n_atoms=n)
    atoms.rattle(0.08, seed=seed)
    return atoms


def test_live_and_sampling_models_agree_and_refresh(model_file):
    live = mace_potential(path=model_file)
    assert isinstance(live, MacePotential) and live.source_sha256
    structures = [_rattled("bcc", 3.3, 16, 0), _rattled("hcp", 2.95, 16, 1)]
    frozen = sampling_copy(live)
    assert type(frozen).__name__ == "MaceModel"
    assert not any(p.requires_grad for p in frozen.parameters())
    assert all(p.requires_grad for p in live.parameters())
    mine, theirs = live(_state(live, structures)), frozen(_state(live, structures))
    for key in ("energy", "forces", "stress"):
        torch.testing.assert_close(mine[key], theirs[key], rtol=0, atol=1e-10)
    # change the live weights: the copy follows only after a refresh
    with torch.no_grad():
        live.model.readouts[0].linear.weight.mul_(1.3)
    changed = live(_state(live, structures))["energy"]
    assert (changed - theirs["energy"]).abs().max() > 1e-4
    refresh_sampling_copy(frozen, live)
    torch.testing.assert_close(
        frozen(_state(live, structures))["energy"], changed, rtol=0, atol=1e-10
    )


def test_loading_errors_say_what_to_do(tmp_path, model_file, monkeypatch):
    with pytest.raises(ModelNotFoundError, match="model.path"):
        mace_potential(path=tmp_path / "missing.model")
    with pytest.raises(ValueError, match="exactly one"):
        mace_potential(name="small", path=model_file)
    with pytest.raises(ValueError, match="known names: .*medium-mpa-0"):
        mace_potential(name="no-such-model")
    # offline, nothing cached: the message names the URL and where to put the file
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(ModelNotFoundError, match=r"Download https://.*copy it to .*cache/mace"):
        foundation_checkpoint("small", download=False)
    # a cached file is found without any download
    cached = tmp_path / "cache" / "mace" / "20231210mace128L0_energy_epoch249model"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(model_file.read_bytes())
    assert foundation_checkpoint("small", download=False) == cached
    assert mace_potential(name="small", download=False).source == "small"
    # corrupt and non-MACE files
    (tmp_path / "corrupt.model").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="could not be loaded as a MACE model"):
        mace_potential(path=tmp_path / "corrupt.model")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "dict.model")
    with pytest.raises(ValueError, match="not a MACE model"):
        mace_potential(path=tmp_path / "dict.model")
    # an element the model does not know
    live = mace_potential(path=model_file)
    with pytest.raises(ValueError, match=r"Fe \(Z=26\) not known"):
        live(_state(live, [build_structure("bcc", element="Fe", lattice_A=2.9, n_atoms=2)]))


def test_trainable_presets(model_file):
    live = mace_potential(path=model_file)
    n_all = sum(p.numel() for p in live.parameters())
    counts = {}
    for preset in ("all", "readouts", "last_interaction"):
        chosen = select_trainable(live, preset)
        counts[preset] = sum(p.numel() for p in live.parameters() if p.requires_grad)
        assert all(n.startswith("model.") for n in chosen)
    assert counts["all"] == n_all
    assert 0 < counts["readouts"] < counts["last_interaction"] < n_all
    select_trainable(live, "last_interaction")
    names = {n for n, p in live.named_parameters() if p.requires_grad}
    assert any(n.startswith("model.interactions.1.") for n in names)
    assert not any(n.startswith("model.interactions.0.") for n in names)


class _SavedTally:
    """Bytes of the tensors autograd holds for a backward, live and at their peak."""

    def __init__(self) -> None:
        self.live = self.peak = 0

    def pack(self, tensor: torch.Tensor):
        return _Held(self, tensor)

    @staticmethod
    def unpack(held) -> torch.Tensor:
        return held.tensor


class _Held:
    def __init__(self, tally: _SavedTally, tensor: torch.Tensor) -> None:
        self.tally, self.tensor = tally, tensor
        self.size = tensor.numel() * tensor.element_size()
        tally.live += self.size
        tally.peak = max(tally.peak, tally.live)

    def __del__(self) -> None:
        self.tally.live -= self.size


def test_chunked_reweighting_gradients_equal_unchunked(model_file, tmp_path, tiny_ti_fit):
    live = mace_potential(path=model_file)
    datamodule = StatePointDataModule(
        [tiny_ti_fit.target], tiny_ti_fit.settings, frames_dir=tmp_path
    )
    datamodule.sample(live)
    ensemble = datamodule.ensembles["ti/hcp"]
    # sampled (torch-sim copy) and reweighting (live) energies agree
    torch.testing.assert_close(
        frame_energies(live, ensemble.frames).detach(),
        ensemble.frames.potential_energy,
        rtol=0,
        atol=1e-10,
    )
    with torch.no_grad():
        for p in live.parameters():
            p.mul_(1.002)
    grads, peaks, values, ess = [], [], [], []
    for chunk, keep_graph in ((1000, True), (1, False), (3, False), (1000, False)):
        tally = _SavedTally()
        with torch.autograd.graph.saved_tensors_hooks(tally.pack, tally.unpack):
            result = reweighted_gibbs_change(
                live, ensemble, chunk_frames=chunk, keep_graph=keep_graph
            )
        loss = result.delta_g_eV
        grads.append(torch.autograd.grad(loss, list(live.parameters())))
        peaks.append(tally.peak)
        values.append(float(loss))
        ess.append(result.relative_ess)
    # the chunked gradient (taken chunk by chunk in the forward) equals one graph's
    for other in grads[1:]:
        for a, b in zip(grads[0], other, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)
    assert any(float(g.abs().max()) > 0 for g in grads[0])
    # memory: one graph keeps the activations of every frame until the backward; chunked,
    # only one chunk's graph is alive at a time (its peak grows with the chunk, not the
    # number of frames) and the FEP weights (8 bytes a frame) are kept
    one_graph, chunk_1, chunk_3, chunk_all = peaks
    assert ensemble.n_valid() >= 6
    assert chunk_1 < one_graph / (ensemble.n_valid() / 2), peaks
    assert 2 * chunk_1 < chunk_3 < 4 * chunk_1, peaks
    assert chunk_all < 1.5 * one_graph, peaks
    # the FEP value itself is chunk-independent too: every chunking above gives the same
    # [G(θ) − G(θ_ref)]/N and ESS to float64 rounding, and so does Zwanzig's formula on
    # energies evaluated 2 and all frames at a time
    assert ensemble.n_valid() == ensemble.frames.n_frames and ensemble.offset_eV == 0.0
    u_2 = frame_energies(live, ensemble.frames, chunk_frames=2)[:, 0].detach()
    u_all = frame_energies(live, ensemble.frames, chunk_frames=1000)[:, 0].detach()
    torch.testing.assert_close(u_2, u_all, rtol=1e-13, atol=1e-12)
    fep = float(
        free_energy_perturbation(
            u_2 - ensemble.reference_energy, ensemble.kT_eV, n_atoms=ensemble.n_atoms
        )
    )
    assert math.isfinite(fep) and abs(fep) > 1e-4  # the 0.2 % change moved G measurably
    for value in values:
        assert value == pytest.approx(fep, rel=1e-12, abs=1e-15), values
    assert ess[0] < 1.0 and all(e == pytest.approx(ess[0], rel=1e-12) for e in ess), ess


def test_round_trip_load_sample_step_export_reload(
    model_file, tmp_path, quiet_trainer, tiny_ti_fit, monkeypatch
):
    from mace.calculators import MACECalculator

    live = mace_potential(path=model_file)
    target, anchor = tiny_ti_fit.target, tiny_ti_fit.anchor
    datamodule = StatePointDataModule(
        [target], tiny_ti_fit.settings, frames_dir=tmp_path / "frames"
    )
    module = DiffTReModule(
        live, [target], [anchor], optimizer=partial(OffsetAdam, lr=1e-3), trainable="readouts"
    )
    before = {n: p.detach().clone() for n, p in live.named_parameters()}
    trainer = quiet_trainer(1)
    trainer.fit(module, datamodule=datamodule)
    moved = [n for n, p in live.named_parameters() if not torch.equal(p, before[n])]
    assert moved and all(n.startswith("model.readouts.") for n in moved)
    # the end-of-run estimate() runs under no_grad and may re-sample: MD with MACE's autograd
    # forces must still work there (it once raised "does not require grad")
    trainer.resampling.ess_threshold = 1.01
    rounds = datamodule.resamplings
    estimate = module.estimate(trainer.resampling.prepare(datamodule, module, differentiable=False))
    assert datamodule.resamplings > rounds and math.isfinite(estimate["implied_T_K"][0])

    files = export_model(live, tmp_path / "export", metadata={"targets": ["ti"]})
    record = torch.load(files["state_dict"], weights_only=True)
    assert record["base_model_sha256"] == live.source_sha256
    structures = [_rattled("bcc", 3.3, 16, 3), _rattled("hcp", 2.95, 16, 4)]
    trained = live(_state(live, structures))["energy"]
    reloaded = mace_potential(path=files["model"])
    torch.testing.assert_close(
        reloaded(_state(live, structures))["energy"], trained, rtol=0, atol=1e-10
    )
    # and through mace's own ASE calculator, which unpickles the file with torch.load's default:
    # phasetune keeps mace's process-wide TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 out, so a user
    # opts in for this trusted file (docs/configuration.md, "MACE")
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    calc = MACECalculator(model_paths=str(files["model"]), device="cpu", default_dtype="float64")
    for atoms, energy in zip(structures, trained, strict=True):
        atoms = atoms.copy()
        atoms.calc = calc
        assert atoms.get_potential_energy() == pytest.approx(float(energy), abs=1e-8)
    # the state-dict file alone restores the weights into the base architecture
    base = mace_potential(path=model_file)
    base.load_state_dict(record["state_dict"])
    torch.testing.assert_close(
        base(_state(base, structures))["energy"], trained, rtol=0, atol=1e-10
    )


def test_export_cli_on_a_run_directory(model_file, tmp_path, capsys):
    """`phasetune export RUN_DIR` rebuilds the run's model from its config + trained weights."""
    from omegaconf import OmegaConf

    from phasetune.export import export_main

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    cfg = {
        "dtype": "float64",
        "model": {
            "_target_": "phasetune.potentials.mace.mace_potential",
            "path": str(model_file),
            "download": False,
        },
        "targets": [{"name": "ti"}],
    }
    OmegaConf.save(OmegaConf.create(cfg), run / ".hydra" / "config.yaml")
    trained = mace_potential(path=model_file)
    with torch.no_grad():
        trained.model.readouts[0].linear.weight.add_(0.01)
    torch.save(trained.state_dict(), run / "trained_model.pt")
    assert export_main([str(run)]) == 0
    assert "finetuned.model" in capsys.readouterr().out
    structures = [_rattled("bcc", 3.3, 16, 5)]
    exported = mace_potential(path=run / "export" / "finetuned.model")
    torch.testing.assert_close(
        exported(_state(exported, structures))["energy"],
        trained(_state(trained, structures))["energy"],
        rtol=0,
        atol=1e-10,
    )
    # not a run directory: exit code 2 and a message naming what is missing
    assert export_main([str(tmp_path / "nowhere")]) == 2
    assert "config.yaml not found" in capsys.readouterr().err
