"""The Ti1 liquid's free-energy path at 1765 K, 0 GPa: does the isotherm at T_h stay one fluid?

    .venv/bin/python -m bench.ti1.liquid_isotherm [T_H_K]

``liquid_free_energy`` integrates (Z − 1)/ρ along an isotherm at T_h from the ideal gas to
the liquid density; below the liquid–gas critical temperature that isotherm crosses the
two-phase region. This prints each isotherm node's density, integrand and configurational
pressure (``preset=quick``'s liquid settings, 250 atoms), then g of the liquid.
"""

import dataclasses
import sys

import numpy as np
import torch

from bench.common import quick_preset, threads_from_env
from phasetune.free_energy.liquid import liquid_free_energy
from phasetune.potentials.eam import mendelev_ti1
from phasetune.structures import build_structure
from phasetune.units import KB_EV_PER_K

t_h = float(sys.argv[1]) if len(sys.argv) > 1 else 6000.0
torch.set_num_threads(threads_from_env())
liquid = build_structure("liquid", element="Ti", lattice_A=4.20, n_atoms=250)
result = liquid_free_energy(
    mendelev_ti1(dtype=torch.float64),
    liquid,
    temperature_K=1765.0,
    pressure_GPa=0.0,
    reference_temperature_K=t_h,
    settings=dataclasses.replace(quick_preset().liquid, progress=False),
)
rho = result.isotherm_densities_per_A3
integrand = result.isotherm_integrand_A3
# (Z − 1)/ρ = βP_conf/ρ²  →  P_conf = ρ² k_B T_h · integrand  (eV/Å³ → GPa: × 160.2)
p_conf_gpa = rho**2 * KB_EV_PER_K * t_h * integrand * 160.21766
for r, f, e, p in zip(rho, integrand, result.isotherm_errors_A3, p_conf_gpa, strict=True):
    print(f"rho {r:.5f} 1/A3  (Z-1)/rho {f:10.3f} ± {e:.3f} A3  P_conf {p:8.2f} GPa")
print("pressure falls with density between nodes:", bool(np.any(np.diff(p_conf_gpa) < 0)))
print(result.describe())
