"""Shared test settings: few threads, no network for wandb, Lennard-Jones argon constants."""

import os

os.environ.setdefault("WANDB_MODE", "disabled")

import mace  # noqa: F401,E402  (must precede e3nn; sets torch.load defaults process-wide)
import pytest  # noqa: E402
import torch  # noqa: E402

from phasetune.units import KB_EV_PER_K  # noqa: E402

# scripts/test.sh runs one thread per xdist worker (PHASETUNE_THREADS=1): two workers of two
# threads each on two cores oversubscribe them, and OpenMP's spinning then slows both
TEST_THREADS = int(os.environ.get("PHASETUNE_THREADS") or min(2, os.cpu_count() or 1))
torch.set_num_threads(TEST_THREADS)


def _restore_threads(what: str) -> None:
    found = torch.get_num_threads()
    if found != TEST_THREADS:
        torch.set_num_threads(TEST_THREADS)
        pytest.fail(f"{what}: torch on {found} threads, not {TEST_THREADS}")


@pytest.fixture(autouse=True)
def _threads_stay_put(request):
    """Every test starts and ends on TEST_THREADS: a module or test that changes torch's thread
    count and leaves it (as three once did) fails here instead of slowing every later test."""
    _restore_threads(f"before {request.node.nodeid}")
    yield
    _restore_threads(f"{request.node.nodeid} left it")


pytest_plugins = ["slow_budget"]  # tests/slow_budget.py: slow validations within a budget

#: Lennard-Jones argon (ε/k_B = 119.8 K, σ = 3.405 Å), the classic parameter set.
ARGON_EPSILON_K = 119.8
ARGON_EPSILON_EV = ARGON_EPSILON_K * KB_EV_PER_K
ARGON_SIGMA_A = 3.405


@pytest.fixture(scope="session")
def argon():
    return {"epsilon_eV": ARGON_EPSILON_EV, "sigma_A": ARGON_SIGMA_A, "epsilon_K": ARGON_EPSILON_K}


#: A train config small enough for tests: 32-atom boxes, the model's T_m given (no
#: coexistence run), short NPT runs, 2 optimizer steps, one thread, no re-measurement.
TINY_TRAIN = [
    "+targets.0.model_transition_K=75.0",
    "targets.0.temperature_K=78.0",
    "targets.0.structures.fcc.n_atoms=32",
    "targets.0.structures.liquid.n_atoms=32",
    "anchor.settings.enthalpy.equilibration_steps=100",
    "anchor.settings.enthalpy.melt_steps=50",
    "anchor.settings.enthalpy.production_steps=200",
    "anchor.settings.enthalpy.progress=false",
    "sampler.equilibration_steps=60",
    "sampler.melt_steps=40",
    "sampler.production_steps=60",
    "sampler.check_phase=false",
    "trainer.max_steps=2",
    "trainer.enable_progress_bar=false",
    "threads=1",
    "remeasure=false",
]


@pytest.fixture
def tiny_train():
    """Overrides of ``phasetune/conf/train.yaml`` for a seconds-long fine-tuning run (a copy)."""
    return list(TINY_TRAIN)


@pytest.fixture
def quiet_trainer():
    """A factory of CPU Lightning Trainers without logger, checkpoints or progress bar, with
    a re-sampling policy (default: ``Resampling()``; the trainer's ``resampling``)."""
    import pytorch_lightning as pl

    from phasetune.learn.resampling import Resampling

    def make(max_steps: int, resampling: Resampling | None = None):
        resampling = Resampling() if resampling is None else resampling
        trainer = pl.Trainer(
            max_steps=max_steps,
            callbacks=[resampling],
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
        )
        trainer.resampling = resampling
        return trainer

    return make


@pytest.fixture
def strain_derivative():
    """(1/V) ∂U/∂ε_ab by central differences of a homogeneous symmetric strain ± h/2.

    ``energy(state)`` gives U [S]; returns [S] for the component (a, b).
    """

    def derivative(energy, state, a: int, b: int, h: float = 1e-6) -> torch.Tensor:
        values = []
        for sign in (1, -1):
            strain = torch.eye(3, dtype=torch.float64)
            strain[a, b] += sign * h / 2
            strain[b, a] += sign * h / 2
            strained = state.clone()
            strained.positions = state.positions @ strain.T
            strained.row_vector_cell = state.row_vector_cell @ strain.T
            values.append(energy(strained).detach())
        volume = torch.linalg.det(state.row_vector_cell)
        return (values[0] - values[1]) / (2 * h) / volume

    return derivative


@pytest.fixture
def tiny_ti_fit():
    """A titanium hcp|bcc target at 900 K, 0 GPa (16-atom boxes) whose anchor is given
    (Δg = −4 meV/atom: the model's T* 850 K, 50 K off), and NPT settings short enough for a
    fine-tuning step of a tiny MACE in seconds: ``.target``, ``.anchor``, ``.settings``."""
    from types import SimpleNamespace

    from phasetune.learn.anchor import Anchor
    from phasetune.sampling.sampler import SamplerSettings
    from phasetune.targets import target_from_dict

    target = target_from_dict(
        {
            "name": "ti",
            "phases": ["hcp", "bcc"],
            "temperature_K": 900.0,
            "pressure_GPa": 0.0,
            "tolerance_K": 20.0,
            "structures": {
                "hcp": {"element": "Ti", "lattice_A": 2.95, "n_atoms": 16},
                "bcc": {"element": "Ti", "lattice_A": 3.3, "n_atoms": 16},
            },
        }
    )
    anchor = Anchor(
        target="ti",
        temperature_K=900.0,
        pressure_GPa=0.0,
        model_transition_K=850.0,
        model_transition_error_K=5.0,
        delta_g_eV=-4e-3,
        delta_g_error_eV=1e-4,
        delta_s_eV_per_K=8e-5,
        method="given",
    )
    settings = SamplerSettings(
        timestep_fs=2.0,
        equilibration_steps=10,
        production_steps=40,
        stride=5,
        check_phase=False,
        progress=False,
        compressibility_per_GPa=0.01,
    )
    return SimpleNamespace(target=target, anchor=anchor, settings=settings)
