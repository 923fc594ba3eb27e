"""Transition targets: YAML entries are validated and errors name the offending field."""

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from phasetune.configs import CONFIG_DIR
from phasetune.targets import TargetError, load_targets, target_from_dict


def _entry(**changes):
    entry = {
        "name": "ar",
        "phases": ["fcc", "liquid"],
        "temperature_K": 83.8,
        "pressure_GPa": 0.0,
        "tolerance_K": 1.0,
        "structures": {
            "fcc": {"element": "Ar", "lattice_A": 5.4, "n_atoms": 32},
            "liquid": {"element": "Ar", "lattice_A": 5.7, "n_atoms": 32},
        },
    }
    entry.update(changes)
    return entry


def test_a_valid_target_builds_both_structures():
    target = target_from_dict(_entry())
    assert target.phases == ("fcc", "liquid") and target.is_melting
    assert len(target.atoms("fcc")) == 32 and len(target.atoms("liquid")) == 32
    assert target.as_dict()["structures"]["fcc"]["lattice_A"] == 5.4


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"phases": ["fcc", "plasma"]}, "unknown phase 'plasma'"),
        ({"phases": ["fcc", "fcc"]}, "A and B are both 'fcc'"),
        ({"phases": ["liquid", "fcc"]}, "put the liquid second"),
        ({"phases": ["fcc"]}, "exactly two phases"),
        ({"temperature_K": 0.0}, "'temperature_K' must be > 0"),
        ({"temperature_K": -5}, "'temperature_K' must be > 0"),
        ({"temperature_K": "hot"}, "'temperature_K' must be a number"),
        ({"tolerance_K": 0}, "'tolerance_K' must be > 0"),
        ({"pressure_GPa": 5e4}, "give the pressure in GPa"),
        (
            {"structures": {"fcc": {"element": "Ar", "lattice_A": 5.4, "n_atoms": 32}}},
            "phase 'liquid'",
        ),
        ({"structures": None}, "missing field 'structures'"),
        ({"temprature_K": 80}, "unknown field(s) ['temprature_K']"),
    ],
)
def test_bad_targets_name_the_field(changes, message):
    with pytest.raises(TargetError) as err:
        target_from_dict(_entry(**changes))
    assert message in str(err.value)
    assert "targets[0] (ar)" in str(err.value)


def test_missing_temperature_and_duplicate_names():
    entry = _entry()
    del entry["temperature_K"]
    with pytest.raises(TargetError, match="missing field 'temperature_K'"):
        target_from_dict(entry)
    with pytest.raises(TargetError, match="unique"):
        load_targets([_entry(), _entry()])
    with pytest.raises(TargetError, match="no targets"):
        load_targets([])


def test_the_shipped_target_group_loads():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train")
    targets = load_targets(OmegaConf.to_container(cfg.targets, resolve=True))
    assert [t.name for t in targets] == ["argon_triple_point"]
    assert targets[0].temperature_K == pytest.approx(83.8)


def test_anchor_is_cached_by_model_weights(tmp_path, argon, monkeypatch):
    """A second call with the same model and settings samples nothing; new weights miss."""
    import dataclasses
    import math

    from phasetune.learn import anchor as anchor_module
    from phasetune.learn.anchor import AnchorSettings, compute_anchors
    from phasetune.potentials.lennard_jones import LennardJones
    from phasetune.sampling.sampler import SamplerSettings

    target = dataclasses.replace(
        target_from_dict(_entry(temperature_K=80.0)), model_transition_K=75.0
    )
    settings = AnchorSettings(
        enthalpy=SamplerSettings(
            timestep_fs=10.0,
            equilibration_steps=200,
            melt_steps=100,
            production_steps=200,
            stride=10,
            compressibility_per_GPa=0.5,
            progress=False,
        )
    )
    model = LennardJones(epsilon_eV=argon["epsilon_eV"], sigma_A=argon["sigma_A"])
    (first,) = compute_anchors(model, [target], settings, cache_dir=tmp_path)
    # 80 K is above the given T* = 75 K: the liquid is stable there, Δg < 0, Δs > 0
    assert first.delta_g_eV < 0 < first.delta_s_eV_per_K
    assert first.delta_g_eV == pytest.approx(-first.delta_s_eV_per_K * 5.0, rel=0.1)
    # a given T* without an error still leaves the Gibbs–Helmholtz integral's error from the
    # sampled enthalpies (small against Δg here, but not zero)
    assert 0.0 < first.delta_g_error_eV < 0.2 * abs(first.delta_g_eV)

    calls = []
    real = anchor_module.enthalpies
    monkeypatch.setattr(
        anchor_module, "enthalpies", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    (again,) = compute_anchors(model, [target], settings, cache_dir=tmp_path)
    assert again == first and calls == []
    with torch.no_grad():
        model.epsilon.mul_(1.01)
    compute_anchors(model, [target], settings, cache_dir=tmp_path)
    assert calls == [1] and len(list(tmp_path.glob("anchor_*.json"))) == 2
    # a given T* with an error adds Δs·σ(T*) in quadrature to the integral's error
    with_error = dataclasses.replace(target, model_transition_error_K=2.0)
    (anchor,) = compute_anchors(model, [with_error], settings, cache_dir=tmp_path)
    from_t_star = 2.0 * anchor.delta_s_eV_per_K
    assert (
        from_t_star
        < anchor.delta_g_error_eV
        < math.hypot(from_t_star, 0.2 * abs(anchor.delta_g_eV))
    )


def test_model_transition_error_is_read_and_checked():
    target = target_from_dict(_entry(model_transition_K=75.0, model_transition_error_K=1.5))
    assert target.model_transition_error_K == 1.5
    with pytest.raises(TargetError, match="model_transition_error_K"):
        target_from_dict(_entry(model_transition_K=75.0, model_transition_error_K=-1.0))


def _alpha_beta_entry(**changes) -> dict:
    """A small Ti hcp|bcc target with a liquid and melting-point guesses (the melting route)."""
    entry = {
        "name": "ab",
        "phases": ["hcp", "bcc"],
        "temperature_K": 1150.0,
        "structures": {
            "hcp": {"element": "Ti", "lattice_A": 2.95, "n_atoms": 16, "c_over_a": 1.6},
            "bcc": {"element": "Ti", "lattice_A": 3.3, "n_atoms": 16},
            "liquid": {"element": "Ti", "lattice_A": 4.2, "n_atoms": 32},
        },
        "melting_guesses_K": [1765, 1918],
    }
    entry.update(changes)
    return entry


def test_melting_route_fields_of_a_solid_solid_target():
    target = target_from_dict(_alpha_beta_entry())
    assert target.melting_guesses_K == (1765.0, 1918.0)
    assert len(target.atoms("liquid")) == 32
    assert abs(target.atoms("liquid").get_volume() / 32 - 4.2**3 / 4) < 1e-9
    for bad in ([1765], [1765, -1], "hot"):
        with pytest.raises(TargetError, match="melting_guesses_K"):
            target_from_dict(_alpha_beta_entry(melting_guesses_K=bad))


def test_anchor_melting_route_needs_the_liquid_and_guesses_before_any_md():
    from phasetune.learn.anchor import AnchorSettings, measure_transitions
    from phasetune.potentials.eam import mendelev_ti1

    entry = _alpha_beta_entry(melting_guesses_K=None)
    del entry["structures"]["liquid"]
    with pytest.raises(ValueError, match="method=melting needs structures.liquid"):
        measure_transitions(
            mendelev_ti1(), [target_from_dict(entry)], AnchorSettings(method="melting")
        )


def test_anchor_cache_key_changes_with_the_anchor_format(argon, monkeypatch):
    """Anchors cached by an older phasetune (another ANCHOR_FORMAT) are not reused."""
    from phasetune.learn import anchor as anchor_module
    from phasetune.learn.anchor import AnchorSettings
    from phasetune.potentials.lennard_jones import LennardJones

    model = LennardJones(epsilon_eV=argon["epsilon_eV"], sigma_A=argon["sigma_A"])
    target = target_from_dict(_entry(temperature_K=80.0))
    key = anchor_module._cache_key(model, target, AnchorSettings())
    assert key == anchor_module._cache_key(model, target, AnchorSettings())
    monkeypatch.setattr(anchor_module, "ANCHOR_FORMAT", anchor_module.ANCHOR_FORMAT - 1)
    assert anchor_module._cache_key(model, target, AnchorSettings()) != key


def test_a_given_latent_heat_anchors_without_md_and_matches_gibbs_helmholtz(monkeypatch):
    """Δg(T) = Δh (1 − T/T*) with σ² = ((1 − T/T*) σ_Δh)² + (Δh T/T*² σ_T*)², no sampling."""
    import math

    from phasetune.learn import anchor as anchor_module
    from phasetune.learn.anchor import AnchorSettings, compute_anchors

    def no_md(*args, **kwargs):
        raise AssertionError("a given latent heat needs no enthalpy runs")

    monkeypatch.setattr(anchor_module, "enthalpies", no_md)
    # ti_small's α–β: T* = 1280.7 ± 120.8 K, Δh = 22.9 ± 2.1 meV/atom; experiment 1154.66 K
    entry = _entry(
        temperature_K=1154.66,
        model_transition_K=1280.7,
        model_transition_error_K=120.8,
        model_latent_heat_eV=0.0229,
        model_latent_heat_error_eV=0.0021,
    )
    from phasetune.potentials.lennard_jones import LennardJones

    model = LennardJones(epsilon_eV=0.0104, sigma_A=3.4)
    (anchor,) = compute_anchors(model, [target_from_dict(entry)], AnchorSettings())
    x = 1154.66 / 1280.7
    assert anchor.delta_g_eV == pytest.approx(0.0229 * (1 - x), rel=1e-12)
    assert anchor.delta_s_eV_per_K == pytest.approx(0.0229 / 1280.7, rel=1e-12)
    # the implied temperature shift Δg/Δs is T* − T_k exactly (constant Δh)
    assert anchor.delta_g_eV / anchor.delta_s_eV_per_K == pytest.approx(1280.7 - 1154.66)
    expected = math.hypot((1 - x) * 0.0021, 0.0229 * 1154.66 / 1280.7**2 * 120.8)
    assert anchor.delta_g_error_eV == pytest.approx(expected, rel=1e-12)
    # ≈ 1.96 meV/atom: T*'s error dominates (Δs σ_T* T_k/T* = 1.95 meV/atom)
    assert 1.9e-3 < anchor.delta_g_error_eV < 2.0e-3
    with pytest.raises(TargetError, match="model_transition_K"):
        target_from_dict(_entry(model_latent_heat_eV=0.02))
    with pytest.raises(TargetError, match="low-T phase"):
        target_from_dict(_entry(model_transition_K=75.0, model_latent_heat_eV=-0.02))
    with pytest.raises(TargetError, match="model_latent_heat_error_eV"):
        target_from_dict(
            _entry(
                model_transition_K=75.0,
                model_latent_heat_eV=0.02,
                model_latent_heat_error_eV=-1.0,
            )
        )
