"""Free-energy change between two models by λ-integration, on Einstein crystals (exact)."""

import math

import numpy as np
import pytest
import torch

from phasetune.free_energy.einstein import EinsteinCrystal
from phasetune.free_energy.model_change import (
    gibbs_change_between_models,
    integration_weights,
    lambda_state_points,
)
from phasetune.sampling.sampler import SamplerSettings, StatePoint
from phasetune.structures import build_structure
from phasetune.units import KB_EV_PER_K


def test_integration_weights_simpson_and_trapezoid():
    even = np.linspace(0.0, 1.0, 5)
    w = integration_weights(even)
    assert w.sum() == pytest.approx(1.0)
    assert w @ even**3 == pytest.approx(0.25, rel=1e-12)  # Simpson is exact for cubics
    uneven = np.array([0.0, 0.2, 1.0])
    w = integration_weights(uneven)
    assert w == pytest.approx([0.1, 0.5, 0.4])  # trapezoid
    assert w @ uneven == pytest.approx(0.5)


def test_gibbs_change_between_einstein_crystals_is_exact():
    """Springs k → 1.2 k at 200 and 400 K: ΔF/N = (3/2) kT ln 1.2 (classical, independent
    atoms), by TI over three nodes and by BAR between them, within their errors."""
    atoms = build_structure("fcc", element="Ar", lattice_A=5.3, n_atoms=32)
    points = [
        StatePoint(
            name=f"einstein_{t:g}K",
            phase="fcc",
            atoms=atoms,
            temperature_K=t,
            cell_mode="fixed",
        )
        for t in (200.0, 400.0)
    ]
    lambdas = (0.0, 0.5, 1.0)
    batch = lambda_state_points(points, lambdas)
    assert [p.name for p in batch[:3]] == [
        "einstein_200K_lambda0",
        "einstein_200K_lambda0.5",
        "einstein_200K_lambda1",
    ]
    sites = torch.cat([torch.tensor(p.atoms.positions) for p in batch])
    k = 1.0
    springs_a = EinsteinCrystal(sites=sites, spring_eV_A2=k)
    springs_b = EinsteinCrystal(sites=sites, spring_eV_A2=1.2 * k)
    settings = SamplerSettings(
        timestep_fs=5.0,
        equilibration_steps=300,
        production_steps=4000,
        stride=10,
        thermostat="langevin",
        check_phase=False,
        progress=False,
        seed=3,
    )
    results = gibbs_change_between_models(
        springs_a, springs_b, points, settings, lambdas=lambdas, chunk_frames=1
    )
    for result, point in zip(results, points, strict=True):
        exact = 1.5 * KB_EV_PER_K * point.temperature_K * math.log(1.2)
        # ⟨U_b − U_a⟩_λ/N = (3/2) kT Δk / k_λ at each node
        nodes = 1.5 * KB_EV_PER_K * point.temperature_K * 0.2 / (1.0 + 0.2 * np.array(lambdas))
        assert np.abs(result.mean_delta_u_eV - nodes).max() < 4 * result.mean_error_eV.max()
        assert result.ti_error_eV < 0.03 * exact and result.bar_error_eV < 0.03 * exact
        assert abs(result.ti_eV - exact) < 4 * result.ti_error_eV, result.describe()
        assert abs(result.bar_eV - exact) < 4 * result.bar_error_eV, result.describe()
        assert list(result.n_valid_frames) == [400, 400, 400]


def test_gibbs_change_rejects_bad_nodes():
    atoms = build_structure("fcc", element="Ar", lattice_A=5.3, n_atoms=32)
    point = StatePoint(name="p", phase="fcc", atoms=atoms, temperature_K=100.0)
    springs = EinsteinCrystal(sites=torch.tensor(atoms.positions), spring_eV_A2=1.0)
    settings = SamplerSettings(production_steps=20, stride=10, equilibration_steps=0)
    for bad in ((0.0, 0.5), (0.0, 0.7, 0.5, 1.0), (0.2, 1.0)):
        with pytest.raises(ValueError, match="λ nodes"):
            gibbs_change_between_models(springs, springs, [point], settings, lambdas=bad)
