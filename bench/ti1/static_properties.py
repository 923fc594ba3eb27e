"""Ti1 at 0 K: hcp a and c/a, cohesive energy, E_bcc − E_hcp, E_fcc − E_hcp (Nelder–Mead).

.venv/bin/python -m bench.ti1.static_properties
"""

import torch
import torch_sim as ts
from ase.build import bulk
from scipy.optimize import minimize

from phasetune.potentials.eam import mendelev_ti1

m = mendelev_ti1()


def e(atoms):
    st = ts.io.atoms_to_state([atoms], device="cpu", dtype=torch.float64)
    return float(m(st)["energy"][0]) / len(atoms)


def ehcp(x):
    a, ca = x
    return e(bulk("Ti", "hcp", a=a, c=a * ca).repeat((4, 4, 3)))


r = minimize(ehcp, [2.95, 1.59], method="Nelder-Mead", options=dict(xatol=1e-5, fatol=1e-9))
print("hcp a c/a E", r.x, r.fun)
rb = minimize(
    lambda x: e(bulk("Ti", "bcc", a=x[0], cubic=True).repeat((4, 4, 4))),
    [3.26],
    method="Nelder-Mead",
    options=dict(xatol=1e-6, fatol=1e-10),
)
print("bcc a E", rb.x, rb.fun, "dE meV", (rb.fun - r.fun) * 1e3)
rf = minimize(
    lambda x: e(bulk("Ti", "fcc", a=x[0], cubic=True).repeat((3, 3, 3))),
    [4.1],
    method="Nelder-Mead",
    options=dict(xatol=1e-6, fatol=1e-10),
)
print("fcc a E", rf.x, rf.fun, "dE meV", (rf.fun - r.fun) * 1e3)
