"""Harmonic finite-size error [F_h(N) − F_h(∞)]/N of Ti1 hcp and bcc boxes at 1150 K.

.venv/bin/python -m bench.ti1.harmonic_finite_size
"""

import time

import torch

from phasetune.free_energy.phonons import harmonic_finite_size_error_eV
from phasetune.potentials.eam import mendelev_ti1
from phasetune.structures import build_structure
from phasetune.units import KB_EV_PER_K

torch.set_num_threads(2)
m = mendelev_ti1()
kT = KB_EV_PER_K * 1150
for phase, n, a, ca, ppc in (
    ("hcp", 96, 2.985, 1.59, 2),
    ("hcp", 256, 2.985, 1.59, 2),
    ("bcc", 128, 3.30, None, 1),
    ("bcc", 250, 3.30, None, 1),
):
    at = build_structure(phase, element="Ti", lattice_A=a, n_atoms=n, c_over_a=ca)
    t = time.time()
    try:
        e = harmonic_finite_size_error_eV(m, at, atoms_per_primitive_cell=ppc, temperature_K=1150.0)
        print(
            phase,
            len(at),
            "corr meV",
            e * 1e3,
            "in kT",
            e / kT,
            "V/N",
            at.get_volume() / len(at),
            time.time() - t,
            flush=True,
        )
    except ValueError as err:
        print(phase, len(at), "ERR", err, flush=True)
