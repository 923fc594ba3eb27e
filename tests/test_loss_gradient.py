"""The DiffTRe loss gradient against central finite differences of the reweighted loss.

The loss the optimizer sees (``DiffTReModule.objective``) is

    L(θ) = Σ_k (Δg_k(θ)/tol_k)² + λ_sp · L2-SP(θ, θ₀) + λ_d · distillation(θ, θ₀),
    Δg_k(θ) = Δg_k(θ₀) − (kT/N_B) ln⟨e^{−βΔU_B}⟩ + (kT/N_A) ln⟨e^{−βΔU_A}⟩,

a function of θ through the live model's energies on fixed stored frames. Autograd must give
its exact derivative: compared here with central differences in float64, at a θ away from
θ_ref (non-uniform weights) and from θ₀ (non-zero pull-back and distillation terms).
"""

import pytest
import torch

from phasetune.learn.anchor import Anchor
from phasetune.learn.data import StatePointDataModule
from phasetune.learn.module import DiffTReModule
from phasetune.potentials.lennard_jones import LennardJones
from phasetune.sampling.sampler import SamplerSettings
from phasetune.targets import target_from_dict


@pytest.fixture(scope="module")
def sampled(tmp_path_factory):
    model = LennardJones(epsilon_eV=0.0104, sigma_A=3.4, cutoff_sigma=2.2, shift=True)
    target = target_from_dict(
        {
            "name": "ar",
            "phases": ["fcc", "liquid"],
            "temperature_K": 80.0,
            "pressure_GPa": 0.0,
            "tolerance_K": 20.0,
            "structures": {
                "fcc": {"element": "Ar", "lattice_A": 5.3, "n_atoms": 32},
                "liquid": {"element": "Ar", "lattice_A": 5.7, "n_atoms": 32},
            },
        }
    )
    settings = SamplerSettings(
        timestep_fs=5.0,
        equilibration_steps=100,
        melt_steps=100,
        production_steps=300,
        stride=10,
        check_phase=False,
        progress=False,
    )
    datamodule = StatePointDataModule(
        [target], settings, frames_dir=tmp_path_factory.mktemp("frames")
    )
    datamodule.sample(model)
    return model, target, datamodule


def test_loss_gradient_matches_finite_differences(sampled):
    model, target, datamodule = sampled
    anchor = Anchor(
        target=target.name,
        temperature_K=target.temperature_K,
        pressure_GPa=target.pressure_GPa,
        model_transition_K=70.0,
        model_transition_error_K=0.5,
        delta_g_eV=-1.5e-3,
        delta_g_error_eV=0.1e-3,
        delta_s_eV_per_K=1.2e-4,
        method="given",
    )
    module = DiffTReModule(
        model, [target], [anchor], optimizer="adam", pullback_weight=1000.0, distill_weight=20.0
    )
    # move θ off both θ_ref (= θ₀ here) and θ₀: all three loss terms and their weights vary
    with torch.no_grad():
        model.epsilon.mul_(1.01)
        model.sigma.mul_(0.998)

    def loss() -> torch.Tensor:
        changes = {
            name: module.reweighted_change(ensemble)
            for name, ensemble in datamodule.ensembles.items()
        }
        return module.objective(changes, datamodule)[0]

    value = loss()
    changes = {n: module.reweighted_change(e) for n, e in datamodule.ensembles.items()}
    target_part = module.objective(changes, datamodule)[1].item()
    # every term contributes: the target part is not the whole loss
    assert 0.1 * value.item() < target_part < 0.9 * value.item(), (target_part, value)
    grads = torch.autograd.grad(value, [model.epsilon, model.sigma])
    for param, grad, h in ((model.epsilon, grads[0], 1e-9), (model.sigma, grads[1], 1e-6)):
        values = []
        for sign in (1, -1):
            with torch.no_grad():
                param.add_(sign * h)
                values.append(loss().item())
                param.sub_(sign * h)
        numeric = (values[0] - values[1]) / (2 * h)
        assert abs(grad.item()) > 0
        assert grad.item() == pytest.approx(numeric, rel=1e-5), (grad.item(), numeric)
