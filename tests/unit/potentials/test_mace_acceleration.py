"""cuEquivariance MACE (``model.enable_cueq``): the same energies, plain e3nn exports.

On a CPU cuequivariance-torch runs its PyTorch path (no fused kernels), so the converted
model can be checked here against the e3nn one; the speed is the GPU check's
(``bench/gpu_check.py``).
"""

import logging

import pytest
import torch
import torch_sim as ts

import phasetune.potentials.mace_acceleration as acceleration
from phasetune.export import export_model
from phasetune.potentials.base import sampling_copy
from phasetune.potentials.fingerprint import model_fingerprint
from phasetune.potentials.mace import MacePotential, build_mace, mace_potential
from phasetune.structures import build_structure

pytestmark = pytest.mark.skipif(
    not acceleration.cueq_available(), reason="cuequivariance-torch is not installed"
)


def _structures():
    out = []
    for phase, a, n in (("bcc", 3.3, 16), ("hcp", 2.95, 16), ("fcc", 4.2, 32)):
        atoms = build_structure(phase, element="Ti", lattice_A=a, n_atoms=n)
        atoms.rattle(0.08, seed=len(out))
        out.append(atoms)
    return out


def _module(dtype=torch.float64):
    # ℓ ≤ 2, ν = 3, two interactions: every kind of block mace converts (vectors and
    # higher irreps in the messages, the symmetric contraction at correlation 3)
    return build_mace(
        atomic_numbers=[22],
        hidden_irreps="8x0e+8x1o",
        max_ell=2,
        correlation=3,
        num_interactions=2,
        atomic_energies_eV=[-1.5],
        scale=0.7,
        shift=-0.2,
        seed=5,
        dtype=dtype,
    )


@pytest.fixture(scope="module")
def pair():
    plain = MacePotential(_module())
    default = torch.get_default_dtype()
    accelerated = MacePotential(_module(), enable_cueq=True)
    assert torch.get_default_dtype() == default  # mace's converter sets it; put back
    return plain, accelerated


def _outputs(potential, dtype=torch.float64):
    state = ts.io.atoms_to_state(_structures(), device="cpu", dtype=dtype)
    potential.compute_stress = True
    return potential(state)


def test_cueq_model_gives_the_e3nn_energies_forces_and_stress(pair):
    plain, accelerated = pair
    assert accelerated.cueq and not plain.cueq
    # the tensor products really were replaced (not the same e3nn module again)
    kinds = {type(m).__module__.split(".")[0] for m in accelerated.model.modules()}
    assert "cuequivariance_torch" in kinds, kinds
    a, b = _outputs(plain), _outputs(accelerated)
    assert float(a["energy"].abs().min()) > 1.0  # a real, non-trivial energy per structure
    torch.testing.assert_close(b["energy"], a["energy"], rtol=0, atol=1e-9)
    torch.testing.assert_close(b["forces"], a["forces"], rtol=0, atol=1e-11)
    torch.testing.assert_close(b["stress"], a["stress"], rtol=0, atol=1e-11)
    assert float(a["forces"].abs().max()) > 5e-3  # this random model's forces are small
    # the sampling copy (torch-sim's MaceModel around a frozen copy) runs the same model
    frozen = sampling_copy(accelerated)
    state = ts.io.atoms_to_state(_structures(), device="cpu", dtype=torch.float64)
    torch.testing.assert_close(frozen(state)["forces"], a["forces"], rtol=0, atol=1e-11)


def test_cueq_in_float32_agrees_within_float32_rounding(caplog, recwarn):
    """Also: without cuequivariance-ops (a CPU) one log line says there is no speed-up,
    and the package's own per-block warning is not repeated."""
    plain = MacePotential(_module(torch.float32), dtype=torch.float32)
    with caplog.at_level(logging.WARNING, logger="phasetune.potentials.mace_acceleration"):
        accelerated = MacePotential(_module(torch.float32), dtype=torch.float32, enable_cueq=True)
        a, b = _outputs(plain, torch.float32), _outputs(accelerated, torch.float32)
    torch.testing.assert_close(b["energy"], a["energy"], rtol=2e-6, atol=1e-5)
    torch.testing.assert_close(b["forces"], a["forces"], rtol=1e-4, atol=1e-5)
    if not acceleration.cueq_kernels_available():
        assert caplog.text.count("no speed-up") == 1, caplog.text
        assert not [w for w in recwarn if "cuequivariance_ops_torch" in str(w.message)]


def test_accelerated_model_exports_plain_e3nn(pair, tmp_path):
    """The exported .model is a plain e3nn MACE with the same energies. Converting back
    rebuilds mace's coupling constants (U matrices, Wigner 3j) to ~1e-8, so the energies
    agree to 1e-7 eV here, not bit for bit, and the model keeps its own anchor fingerprint."""
    plain, accelerated = pair
    assert model_fingerprint(accelerated) != model_fingerprint(plain)
    files = export_model(accelerated, tmp_path)
    reloaded = mace_potential(path=files["model"])
    assert not reloaded.cueq
    kinds = {type(m).__module__.split(".")[0] for m in reloaded.model.modules()}
    assert "cuequivariance_torch" not in kinds
    torch.testing.assert_close(
        _outputs(reloaded)["energy"], _outputs(plain)["energy"], rtol=0, atol=1e-7
    )
    # the exported state dict is a plain MacePotential's
    record = torch.load(files["state_dict"], weights_only=True)
    fresh = MacePotential(_module())
    fresh.load_state_dict(record["state_dict"])
    torch.testing.assert_close(
        _outputs(fresh)["energy"], _outputs(plain)["energy"], rtol=0, atol=1e-7
    )


def test_missing_package_and_lora_are_refused_in_one_line(monkeypatch):
    with pytest.raises(ValueError, match="LoRA adapters .* model.enable_cueq=false"):
        MacePotential(_module(), enable_cueq=True, lora_rank=2)
    monkeypatch.setattr(acceleration, "cueq_available", lambda: False)
    with pytest.raises(ValueError) as err:
        MacePotential(_module(), enable_cueq=True)
    message = str(err.value)
    assert "\n" not in message and "pip install 'phasetune[cueq]'" in message
