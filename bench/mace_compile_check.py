"""Does mace's torch.compile path give the plain model's forces? (issue 23, acceleration)

    .venv/bin/python -m bench.mace_compile_check [cpu|cuda]

torch-sim's ``MaceModel`` (mace's ``MaceTorchSimModel``) takes ``compile_mode``: it simplifies
the module with ``torch.fx`` and wraps it in ``torch.compile``. This builds a small MACE
(ℓ ≤ 2, ν = 3, two interactions), wraps one copy plainly and one compiled, and prints the
largest differences of energies, forces and stress on two rattled 16-atom Ti crystals, and
the compile time. phasetune offers a compile option only where these agree to float
rounding (bench/RESULTS.md, "torch.compile").
"""

import copy
import json
import sys
import time

import torch
import torch_sim as ts

from phasetune.potentials.mace import build_mace
from phasetune.structures import build_structure
from phasetune.third_party import mace_import

device = sys.argv[1] if len(sys.argv) > 1 else "cpu"
with mace_import():
    from torch_sim.models.mace import MaceModel

module = build_mace(atomic_numbers=[22], hidden_irreps="8x0e+8x1o", max_ell=2, correlation=3)
atoms = [
    build_structure("bcc", element="Ti", lattice_A=3.3, n_atoms=16),
    build_structure("hcp", element="Ti", lattice_A=2.95, n_atoms=16),
]
for k, a in enumerate(atoms):
    a.rattle(0.05, seed=k)
state = ts.io.atoms_to_state(atoms, device=device, dtype=torch.float64)
plain = MaceModel(copy.deepcopy(module), device=device, dtype=torch.float64)
compiled = MaceModel(
    copy.deepcopy(module), device=device, dtype=torch.float64, compile_mode="default"
)
reference = plain(state)
start = time.perf_counter()
result = compiled(state)
first_call_s = time.perf_counter() - start
print(
    json.dumps(
        {
            "device": device,
            "torch": torch.__version__,
            "first_call_s": round(first_call_s, 1),
            "max_force_eV_per_A": float(reference["forces"].abs().max()),
            "max_force_compiled_eV_per_A": float(result["forces"].abs().max()),
            **{
                f"max_diff_{key}": float((result[key] - reference[key]).abs().max())
                for key in ("energy", "forces", "stress")
            },
        }
    )
)
