"""Frenkel–Ladd free energy of the LJ fcc solid vs. van der Hoef's fit (full potential, N → ∞).

    .venv/bin/python -m bench.lj_fcc_free_energy [n_atoms] [switching_steps] [cutoff_sigma]

State point T* = 2, P* = 42.18 (ρ* ≈ 1.28, the classic Frenkel–Ladd state). The potential is
truncated at ``cutoff_sigma`` (default 3σ) with analytic tail corrections; van der Hoef,
J. Chem. Phys. 113, 8142 (2000), Eq. (21) gives βA_ex/N of the full potential in the
thermodynamic limit, evaluated here at the density the NPT run gives. Our finite-N value
includes the centre-of-mass terms (≈ −(3/2) ln N / N) that vanish only as N → ∞; the
script also prints it corrected by the harmonic crystal's own finite-size error f(N) − f(∞)
(:func:`~phasetune.free_energy.harmonic.lennard_jones_fcc_finite_size_correction`).
"""

import math
import sys
import time

import torch

from phasetune.free_energy.harmonic import lennard_jones_fcc_finite_size_correction
from phasetune.free_energy.liquid import thermal_wavelength_A
from phasetune.free_energy.literature import van_der_hoef_lj_fcc_excess_free_energy
from phasetune.free_energy.solid import FrenkelLaddSettings, solid_free_energy
from phasetune.potentials.lennard_jones import LennardJones
from phasetune.structures import build_structure
from phasetune.units import EV_PER_A3_PER_GPA, KB_EV_PER_K

if __name__ == "__main__":
    torch.set_num_threads(2)
    n_atoms = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    cutoff = float(sys.argv[3]) if len(sys.argv) > 3 else 3.0
    eps_K, sigma = 119.8, 3.405
    eps = eps_K * KB_EV_PER_K
    model = LennardJones(
        epsilon_eV=eps, sigma_A=sigma, cutoff_sigma=cutoff, shift=False, tail_correction=True
    )
    temperature = 2.0 * eps_K
    pressure = 42.18 * eps / sigma**3 / EV_PER_A3_PER_GPA
    atoms = build_structure(
        "fcc", element="Ar", lattice_A=(4 / 1.28) ** (1 / 3) * sigma, n_atoms=n_atoms
    )
    settings = FrenkelLaddSettings(
        timestep_fs=4.0,
        npt_equilibration_steps=500,
        npt_production_steps=1000,
        npt_stride=10,
        switching_equilibration_steps=300,
        switching_steps=steps,
        n_replicas=4,
        progress=False,
    )
    start = time.perf_counter()
    result = solid_free_energy(
        model,
        atoms,
        phase="fcc",
        temperature_K=temperature,
        pressure_GPa=pressure,
        settings=settings,
    )
    wall = time.perf_counter() - start
    kT = KB_EV_PER_K * temperature
    density = sigma**3 / result.volume_A3_per_atom
    wavelength_A = thermal_wavelength_A(mass_amu=39.948, temperature_K=temperature)
    beta_f = result.f_eV_per_atom / kT
    ideal = math.log(density / sigma**3 * wavelength_A**3) - 1.0
    ours = beta_f - ideal
    reference = van_der_hoef_lj_fcc_excess_free_energy(temperature=2.0, density=density)
    correction = lennard_jones_fcc_finite_size_correction(
        density=density, temperature=2.0, n_atoms=result.n_atoms, cutoff=cutoff
    )
    corrected = ours - correction
    print(result.describe())
    print(
        f"N={result.n_atoms} rho*={density:.4f} betaA_ex/N={ours:.4f} ± "
        f"{result.g_error_eV / kT:.4f} van der Hoef={reference:.4f} "
        f"rel={(ours - reference) / reference:+.4f}; harmonic finite-size correction "
        f"{correction:+.4f} -> {corrected:.4f} rel={(corrected - reference) / reference:+.4f} "
        f"wall={wall:.0f} s"
    )
