"""The coexistence cache: a stored melting point is read back exactly, and only for the same
inputs; what is measured and what is read is decided per pressure."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

import phasetune.free_energy.coexistence as coexistence_module
from phasetune.free_energy.bracketing import melting_temperatures_bracketed
from phasetune.free_energy.coexistence import CoexistenceResult, CoexistenceSettings
from phasetune.free_energy.coexistence_cache import coexistence_key, load_result, store_result
from phasetune.potentials.lennard_jones import LennardJones
from phasetune.structures import build_structure

EPSILON_EV, SIGMA_A = 0.0103, 3.405

TINY = CoexistenceSettings(
    timestep_fs=10.0,
    solid_steps=100,
    melt_steps=100,
    quench_steps=20,
    equilibration_steps=20,
    production_steps=150,
    stride=50,
    progress=False,
)


def _lj(epsilon_eV=EPSILON_EV):
    return LennardJones(epsilon_eV=epsilon_eV, sigma_A=SIGMA_A, cutoff_sigma=2.5, shift=True)


def _fcc(lattice_A=5.3):
    return build_structure("fcc", element="Ar", lattice_A=lattice_A, n_atoms=32)


def _same(a: CoexistenceResult, b: CoexistenceResult) -> None:
    for f in dataclasses.fields(CoexistenceResult):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert isinstance(y, np.ndarray) and x.dtype == y.dtype, f.name
            np.testing.assert_array_equal(x, y, err_msg=f.name)  # NaN equals NaN here
        elif isinstance(x, float) and math.isnan(x):
            assert math.isnan(y), f.name
        else:
            assert x == y, f.name


def test_a_measured_melting_point_is_read_back_bit_for_bit_instead_of_measured(
    tmp_path, monkeypatch
):
    settings = dataclasses.replace(TINY, cache_dir=str(tmp_path))
    run = dict(
        solid_phase="fcc",
        pressures_GPa=[0.0],
        guesses_K=[85.0],
        window=0.1,
        max_recentre=0,
        n_temperatures=2,
        n_replicas=1,
    )
    (measured,) = melting_temperatures_bracketed(_lj(), _fcc(), settings=settings, **run)
    assert len(list(tmp_path.glob("coexistence_*.json"))) == 1
    assert len(list((tmp_path / "boxes").glob("*.json"))) == 2  # and its two boxes

    def no_md(*args, **kwargs):
        raise AssertionError("measured again although the result is in the cache")

    monkeypatch.setattr(coexistence_module, "melting_temperatures_coexistence", no_md)
    # a fresh model object with the same weights and a quieter progress setting: same key
    quiet = dataclasses.replace(settings, progress=True)
    (cached,) = melting_temperatures_bracketed(_lj(), _fcc(), settings=quiet, **run)
    _same(measured, cached)
    assert cached.describe() == measured.describe()
    # another seed is another measurement
    with pytest.raises(AssertionError, match="measured again"):
        melting_temperatures_bracketed(
            _lj(), _fcc(), settings=dataclasses.replace(settings, seed=1), **run
        )


#: the inputs of one pressure's coexistence run besides the model and the solid
KEY_INPUTS = dict(
    solid_phase="fcc",
    pressure_GPa=0.0,
    guess_K=85.0,
    window=0.1,
    max_recentre=2,
    n_temperatures=3,
    n_replicas=2,
    settings=TINY,
    dtype=torch.float64,
    device="cpu",
)


def test_every_input_that_changes_the_boxes_changes_the_key():
    key = coexistence_key(_lj(), _fcc(), **KEY_INPUTS)
    assert key == coexistence_key(_lj(), _fcc(), **KEY_INPUTS)
    for unseen in (
        dataclasses.replace(TINY, progress=True),
        dataclasses.replace(TINY, cache_dir="/elsewhere"),
    ):
        assert coexistence_key(_lj(), _fcc(), **{**KEY_INPUTS, "settings": unseen}) == key
    changed = [
        coexistence_key(_lj(EPSILON_EV * (1 + 1e-12)), _fcc(), **KEY_INPUTS),
        coexistence_key(_lj(), _fcc(5.31), **KEY_INPUTS),
    ]
    for name, value in [
        ("solid_phase", "bcc"),
        ("pressure_GPa", 0.1),
        ("guess_K", 85.0 + 1e-9),
        ("window", 0.05),
        ("max_recentre", 1),
        ("n_temperatures", 4),
        ("n_replicas", 3),
        ("dtype", torch.float32),
        ("settings", dataclasses.replace(TINY, seed=1)),
        ("settings", dataclasses.replace(TINY, production_steps=300)),
        ("settings", dataclasses.replace(TINY, timestep_fs=5.0)),
    ]:
        changed.append(coexistence_key(_lj(), _fcc(), **{**KEY_INPUTS, name: value}))
    assert key not in changed and len(set(changed)) == len(changed)


def _fake_result(pressure_GPa, t_m, bracketed):
    temps = np.array([80.0, 90.0])
    return CoexistenceResult(
        solid_phase="fcc",
        pressure_GPa=pressure_GPa,
        temperatures_K=temps,
        replica=np.zeros(2, int),
        velocity_A_per_ps=0.1 * (t_m - temps),
        time_ps=np.arange(3.0),
        solid_fraction=np.full((3, 2), 0.5),
        melting_temperature_K=t_m,
        error_K=1.0,
        replica_melting_temperatures_K=np.array([t_m]),
        bracketed=bracketed,
        n_atoms=64,
        transformed=np.zeros(2, bool),
    )


def test_only_the_pressures_not_in_the_cache_are_measured_and_a_recentred_one_is_stored_once(
    tmp_path, monkeypatch
):
    """P = 0 is cached; P = 1 first lands outside its window, is re-centred, then bracketed:
    one batch per attempt with P = 1 alone, and the final result stored under its first key."""
    settings = dataclasses.replace(TINY, cache_dir=str(tmp_path))
    run = dict(solid_phase="fcc", window=0.1, max_recentre=2, settings=settings)
    model, solid = _lj(), _fcc()

    def key(p, guess):
        inputs = {**KEY_INPUTS, "pressure_GPa": p, "guess_K": guess, "settings": settings}
        return coexistence_key(model, solid, **inputs)

    store_result(tmp_path, key(0.0, 85.0), _fake_result(0.0, 84.0, True))
    calls = []

    def fake(model, atoms, *, pressures_GPa, guesses_K, **kwargs):
        calls.append((list(pressures_GPa), list(guesses_K)))
        bracketed = len(calls) > 1
        return [_fake_result(1.0, 120.0 if bracketed else 150.0, bracketed)]

    monkeypatch.setattr(coexistence_module, "melting_temperatures_coexistence", fake)
    low, high = melting_temperatures_bracketed(
        model, solid, pressures_GPa=[0.0, 1.0], guesses_K=[85.0, 110.0], **run
    )
    assert calls == [([1.0], [110.0]), ([1.0], [pytest.approx(143.0)])]  # 150 K, clipped
    assert low.melting_temperature_K == 84.0 and high.melting_temperature_K == 120.0
    assert load_result(tmp_path, key(1.0, 110.0), CoexistenceResult).melting_temperature_K == 120.0
    assert len(list(tmp_path.glob("coexistence_*.json"))) == 2
    # a file of an older format is not trusted
    path = tmp_path / f"coexistence_{key(0.0, 85.0)}.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "format": 0}))
    assert load_result(tmp_path, key(0.0, 85.0), CoexistenceResult) is None
