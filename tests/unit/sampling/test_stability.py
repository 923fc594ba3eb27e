"""Unstable MD is caught per system: NaN forces, runaway temperature, flying atoms, a
collapsing cell. The faulty system restarts from its last good frame with a smaller time
step; the others are not disturbed (to rounding: the restart can trigger a rebuild of the
batch's shared Verlet list, which reorders their pair sums at the 1e-16 level)."""

import pytest
import torch

from phasetune.potentials.lennard_jones import LennardJones
from phasetune.sampling.integrator import crescale_init, ensemble_targets
from phasetune.sampling.sampler import SamplerSettings, StatePoint, sample_state_points
from phasetune.sampling.stability import StabilityGuard, StabilitySettings
from phasetune.structures import build_structure
from phasetune.units import KB_EV_PER_K, fs_to_internal


class NaNAfter(torch.nn.Module):
    """Wraps a model; from call ``start`` on, for ``calls`` calls, system ``system`` gets NaN."""

    def __init__(self, model, *, system: int, start: int, calls: int = 1) -> None:
        super().__init__()
        self.inner, self.system, self.start, self.calls, self.count = model, system, start, calls, 0

    @property
    def device(self):
        return self.inner.device

    @property
    def dtype(self):
        return self.inner.dtype

    def forward(self, state, **kwargs):
        out = dict(self.inner(state, **kwargs))
        self.count += 1
        if self.start <= self.count < self.start + self.calls:
            atoms = state.system_idx == self.system
            out["energy"] = out["energy"].clone()
            out["energy"][self.system] = float("nan")
            out["forces"] = out["forces"].clone()
            out["forces"][atoms] = float("nan")
        return out


def _points(argon):
    atoms = build_structure("fcc", element="Ar", lattice_A=5.3, n_atoms=32)
    return [
        StatePoint(name=f"s{k}", phase="fcc", atoms=atoms, temperature_K=40.0 + 10 * k)
        for k in range(3)
    ]


SETTINGS = SamplerSettings(
    timestep_fs=10.0,
    equilibration_steps=40,
    production_steps=80,
    stride=10,
    check_phase=False,
    progress=False,
    seed=5,
)


@pytest.fixture
def lj(argon):
    return LennardJones(epsilon_eV=argon["epsilon_eV"], sigma_A=argon["sigma_A"], cutoff_sigma=2.5)


def test_nan_in_one_system_restarts_it_and_leaves_the_others_undisturbed(argon, lj):
    points = _points(argon)
    clean, _ = sample_state_points(lj, points, SETTINGS)
    faulty = NaNAfter(lj, system=1, start=75)
    frames, _ = sample_state_points(faulty, points, SETTINGS)
    events = frames.metadata["md_events"]
    assert [e["system"] for e in events] == ["s1"], events
    assert "NaN" in events[0]["reason"] and "dt → 5 fs" in events[0]["action"]
    assert events[0]["step"] == 74  # the init call is call 1: step k evaluates call k + 1
    # nothing NaN was stored, and the run went on to the end
    assert frames.n_frames == clean.n_frames
    assert bool(torch.isfinite(frames.positions).all())
    assert bool(torch.isfinite(frames.potential_energy).all())
    # the other systems never noticed: the same frames up to rounding
    for k in (0, 2):
        torch.testing.assert_close(
            frames.system_positions(k), clean.system_positions(k), rtol=0, atol=1e-9
        )
        torch.testing.assert_close(
            frames.potential_energy[:, k], clean.potential_energy[:, k], rtol=0, atol=1e-9
        )
    # the restarted system went on from its last good snapshot (step 70) with dt/2
    drift = (frames.system_positions(1)[-1] - clean.system_positions(1)[-1]).abs().max()
    assert drift > 1e-3
    assert bool(frames.phase_ok.all())


def test_a_system_that_keeps_failing_is_stopped_and_its_frames_flagged(argon, lj):
    settings = StabilitySettings(max_retries=2)
    faulty = NaNAfter(lj, system=2, start=60, calls=10_000)
    run = SamplerSettings(**{**SETTINGS.__dict__, "stability": settings})
    frames, _ = sample_state_points(faulty, _points(argon), run)
    events = frames.metadata["md_events"]
    assert len(events) == 3 and all(e["system"] == "s2" for e in events)
    assert "stopped after 2 restarts" in events[-1]["action"]
    assert not bool(frames.phase_ok[-1, 2]) and bool(frames.phase_ok[:, :2].all())
    assert bool(torch.isfinite(frames.positions).all())


def test_guard_detects_hot_flying_and_collapsing_systems(argon, lj):
    atoms = build_structure("fcc", element="Ar", lattice_A=5.3, n_atoms=32)
    import torch_sim as ts

    state = ts.io.atoms_to_state([atoms] * 4, device="cpu", dtype=torch.float64)
    state.rng = 0
    kT = torch.full((4,), KB_EV_PER_K * 50.0, dtype=torch.float64)
    targets = ensemble_targets(
        kT=kT,
        pressure=torch.zeros(4, dtype=torch.float64),
        cell_mode="isotropic",
        thermostat_tau_fs=100.0,
        barostat_tau_fs=1000.0,
        compressibility_per_GPa=0.5,
    )
    md = crescale_init(state, lj, targets=targets)
    dt = torch.tensor(fs_to_internal(10.0), dtype=torch.float64)
    settings = StabilitySettings(check_every=1)
    guard = StabilityGuard.start(md, ["ok", "hot", "flying", "collapse"], dt, settings)
    bad, reasons = guard.unstable(md, kT)
    assert not bool(bad.any()), reasons
    idx = md.system_idx
    md.momenta = md.momenta.clone()
    md.momenta[idx == 1] *= 10.0  # 100× the kinetic energy
    md.positions = md.positions.clone()
    md.positions[int(torch.nonzero(idx == 2)[0])] += 5.0  # one atom jumps 8.7 Å
    md.cell = md.cell.clone()
    md.cell[3] *= 0.5  # V → V/8 in one step
    bad, reasons = guard.unstable(md, kT)
    assert bad.tolist() == [False, True, True, True]
    assert "temperature" in reasons[1]
    assert "thermal step" in reasons[2]
    assert "volume changed by a factor 0.12" in reasons[3]
    # a restart puts the systems back exactly and halves their time step
    before = guard._snapshot["positions"].clone()
    md = guard.restart(md, bad, reasons, step=1)
    assert torch.equal(md.positions, before)
    assert torch.equal(md.cell, guard._snapshot["cell"])
    assert guard.dt.tolist() == pytest.approx(
        [float(dt), float(dt) / 2, float(dt) / 2, float(dt) / 2]
    )


def test_stability_settings_are_checked():
    with pytest.raises(ValueError, match="timestep_factor"):
        StabilitySettings(timestep_factor=1.5)
    with pytest.raises(ValueError, match="max_retries"):
        StabilitySettings(max_retries=-1)
    # a Hydra-style dict is accepted by SamplerSettings
    assert SamplerSettings(stability={"max_retries": 1}).stability.max_retries == 1


def _tiny_fit(model, tmp_path, quiet_trainer, anchor_dg=1e-3, max_steps=2):
    from phasetune.learn.anchor import Anchor
    from phasetune.learn.data import StatePointDataModule
    from phasetune.learn.module import DiffTReModule
    from phasetune.targets import target_from_dict

    target = target_from_dict(
        {
            "name": "t",
            "phases": ["fcc", "liquid"],
            "temperature_K": 70.0,
            "tolerance_K": 1.0,
            "structures": {
                "fcc": {"element": "Ar", "lattice_A": 5.4, "n_atoms": 32},
                "liquid": {"element": "Ar", "lattice_A": 5.7, "n_atoms": 32},
            },
        }
    )
    anchor = Anchor("t", 70.0, 0.0, 75.0, 0.5, anchor_dg, 1e-4, 1.2e-4, "given")
    datamodule = StatePointDataModule(
        [target],
        SamplerSettings(
            timestep_fs=10.0,
            equilibration_steps=60,
            melt_steps=40,
            production_steps=60,
            stride=10,
            check_phase=False,
            progress=False,
        ),
        frames_dir=tmp_path,
    )
    module = DiffTReModule(model, [target], [anchor], trainable=["inner.epsilon"], patience=100)
    trainer = quiet_trainer(max_steps)
    trainer.fit(module, datamodule=datamodule)
    return module, datamodule


def test_fine_tuning_run_survives_nan_md_and_reports_it(lj, tmp_path, quiet_trainer):
    model = NaNAfter(lj, system=1, start=80)  # the liquid state point, mid-equilibration
    module, datamodule = _tiny_fit(model, tmp_path, quiet_trainer)
    assert [e["system"] for e in datamodule.md_events] == ["t/liquid"]
    rows = [r for r in module.history if "loss" in r]
    assert len(rows) == 2 and rows[-1]["md_restarts"] == 1.0
    assert all(r["loss"] == r["loss"] for r in rows)  # finite: nothing NaN reached the loss


def test_nan_loss_skips_the_step_keeps_parameters_and_stops_after_three(
    lj, tmp_path, quiet_trainer
):
    model = NaNAfter(lj, system=0, start=10**9)  # never NaN: the anchor is what is broken
    epsilon0 = float(lj.epsilon)
    with pytest.raises(RuntimeError, match="3 non-finite losses in a row"):
        _tiny_fit(model, tmp_path, quiet_trainer, anchor_dg=float("nan"), max_steps=5)
    assert float(lj.epsilon) == epsilon0
