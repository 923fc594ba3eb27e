"""T_m of LJ (r_c = 2.5σ, truncated and shifted) at Pedersen's P* = 2.185 from free energies.

    .venv/bin/python bench/lj_pedersen_free_energy.py [n_atoms] [correction]

Published: Pedersen, J. Chem. Phys. 139, 104102 (2013), Table I: T* = 0.800 at P* = 2.185
(0.0915 GPa in argon units). Frenkel–Ladd fcc and the liquid from the ideal gas (``n_atoms``
each, default 256), Δg at T₀ = 95.8 K, Gibbs–Helmholtz at 0.9/1.0/1.1 T₀ to the root.
``correction`` is the crystal's ``finite_size_correction`` (default harmonic; or none).
"""

import sys
import time

import torch

from phasetune.free_energy.solid import FrenkelLaddSettings
from phasetune.free_energy.transition import transition_from_free_energies
from phasetune.potentials.lennard_jones import LennardJones
from phasetune.sampling.sampler import SamplerSettings
from phasetune.structures import build_structure
from phasetune.units import KB_EV_PER_K

if __name__ == "__main__":
    torch.set_num_threads(2)
    n_atoms = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    correction = sys.argv[2] if len(sys.argv) > 2 else "harmonic"
    eps, sigma, t0 = 119.8 * KB_EV_PER_K, 3.405, 95.8
    model = LennardJones(epsilon_eV=eps, sigma_A=sigma, cutoff_sigma=2.5, shift=True)
    md = dict(timestep_fs=10.0, compressibility_per_GPa=0.5, progress=False)
    start = time.perf_counter()
    result = transition_from_free_energies(
        model,
        {
            "fcc": build_structure("fcc", element="Ar", lattice_A=5.40, n_atoms=n_atoms),
            "liquid": build_structure("liquid", element="Ar", lattice_A=5.65, n_atoms=n_atoms),
        },
        pressure_GPa=0.0915,
        reference_temperature_K=t0,
        enthalpy_temperatures_K=[0.9 * t0, t0, 1.1 * t0],
        solid_settings=FrenkelLaddSettings(
            timestep_fs=10.0,
            npt_equilibration_steps=500,
            npt_production_steps=1000,
            switching_equilibration_steps=300,
            switching_steps=2000,
            n_replicas=4,
            compressibility_per_GPa=0.5,
            progress=False,
            finite_size_correction=correction,
        ),
        liquid_settings=SamplerSettings(
            equilibration_steps=500, melt_steps=300, production_steps=2000, stride=10, **md
        ),
        enthalpy_settings=SamplerSettings(
            equilibration_steps=500, melt_steps=300, production_steps=2000, stride=10, **md
        ),
        liquid_reference_temperature_K=240.0,
    )
    wall = time.perf_counter() - start
    t_star = result.transition_temperature_K * KB_EV_PER_K / eps
    print(
        f"N={n_atoms} correction={correction}: Δg(T0) = {(result.g_b_eV - result.g_a_eV) * 1e3:.3f}"
        f" meV/atom, T_m = {result.transition_temperature_K:.2f} ± {result.error_K:.2f} K = "
        f"{t_star:.4f} ({(t_star / 0.800 - 1) * 100:+.2f} % from Pedersen's 0.800), {wall:.0f} s"
    )
