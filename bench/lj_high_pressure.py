"""LJ (r_c = 2.5σ, truncated and shifted) at P* = 5: coexistence and free energies side by side.

    OMP_NUM_THREADS=2 .venv/bin/python bench/lj_high_pressure.py [P_STAR] [GUESS_K]

Coexistence: fcc 5×5×5 cells doubled along z (1,000-atom boxes), 5 temperatures ± 5 % × 2
replicas, 30 ps, re-centred if the root is not bracketed. Free energies at T₀ = the
coexistence T_m: Frenkel–Ladd fcc 256 atoms (4 replicas, 40 ps switching, harmonic
finite-size correction), the liquid from the ideal gas (isotherm at 2ε/k_B), Gibbs–Helmholtz
from NPT enthalpies at 0.9/1.0/1.1 T₀. Prints both T_m with their errors and their
difference in units of the combined error.
"""

import math
import sys
import time

import torch

from phasetune.free_energy.coexistence import CoexistenceSettings, melting_temperatures_bracketed
from phasetune.free_energy.solid import FrenkelLaddSettings
from phasetune.free_energy.transition import transition_from_free_energies
from phasetune.potentials.lennard_jones import LennardJones
from phasetune.sampling.sampler import SamplerSettings
from phasetune.structures import build_structure
from phasetune.units import EV_PER_A3_PER_GPA

EPSILON_EV, SIGMA_A, EPSILON_K = 0.0103236, 3.405, 119.8

if __name__ == "__main__":
    torch.set_num_threads(2)
    p_star = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    guess = float(sys.argv[2]) if len(sys.argv) > 2 else 120.0
    pressure = p_star * EPSILON_EV / SIGMA_A**3 / EV_PER_A3_PER_GPA
    lj = LennardJones(epsilon_eV=EPSILON_EV, sigma_A=SIGMA_A, cutoff_sigma=2.5, shift=True)
    start = time.perf_counter()
    (coexistence,) = melting_temperatures_bracketed(
        lj,
        build_structure("fcc", element="Ar", lattice_A=5.25, n_atoms=500),
        solid_phase="fcc",
        pressures_GPa=[pressure],
        guesses_K=[guess],
        window=0.05,
        n_temperatures=5,
        n_replicas=2,
        settings=CoexistenceSettings(
            timestep_fs=10.0,
            solid_steps=600,
            melt_steps=400,
            quench_steps=100,
            equilibration_steps=200,
            production_steps=3000,
            stride=50,
            progress=False,
        ),
    )
    print(coexistence.describe(), f"[{time.perf_counter() - start:.0f} s]", flush=True)
    t0 = coexistence.melting_temperature_K
    md = dict(timestep_fs=10.0, compressibility_per_GPa=0.2, progress=False)
    fe = transition_from_free_energies(
        lj,
        {
            "fcc": build_structure("fcc", element="Ar", lattice_A=5.25, n_atoms=256),
            "liquid": build_structure("liquid", element="Ar", lattice_A=5.50, n_atoms=256),
        },
        pressure_GPa=pressure,
        reference_temperature_K=t0,
        enthalpy_temperatures_K=[0.9 * t0, t0, 1.1 * t0],
        solid_settings=FrenkelLaddSettings(
            timestep_fs=10.0,
            npt_equilibration_steps=500,
            npt_production_steps=1000,
            switching_equilibration_steps=300,
            switching_steps=4000,
            n_replicas=4,
            compressibility_per_GPa=0.2,
            progress=False,
            finite_size_correction="harmonic",
        ),
        liquid_settings=SamplerSettings(
            equilibration_steps=500, melt_steps=300, production_steps=12000, stride=10, **md
        ),
        enthalpy_settings=SamplerSettings(
            equilibration_steps=500, melt_steps=300, production_steps=2000, stride=10, **md
        ),
        liquid_reference_temperature_K=2 * EPSILON_K,
    )
    print(fe.describe(), f"[{time.perf_counter() - start:.0f} s]")
    combined = math.hypot(fe.total_error_K, coexistence.error_K)
    difference = fe.transition_temperature_K - coexistence.melting_temperature_K
    print(
        f"P* = {p_star:g} ({pressure:.4f} GPa): coexistence T* = "
        f"{coexistence.melting_temperature_K / EPSILON_K:.4f}, free energies T* = "
        f"{fe.transition_temperature_K / EPSILON_K:.4f}; difference {difference:+.2f} K = "
        f"{difference / combined:+.2f} σ"
    )
