"""Batched sampler: ensembles, literature equation of state, barostat modes, conservation, I/O."""

import dataclasses

import numpy as np
import pytest
import torch
from ase import Atoms

from phasetune.potentials.base import sampling_copy
from phasetune.potentials.evaluation import frame_energies
from phasetune.potentials.ideal_gas import IdealGas
from phasetune.potentials.lennard_jones import LennardJones
from phasetune.sampling.frames import Frames
from phasetune.sampling.integrator import nve_step
from phasetune.sampling.sampler import (
    SamplerSettings,
    StatePoint,
    sample_state_points,
)
from phasetune.structures import build_structure
from phasetune.thermo.statistics import standard_error_of_mean
from phasetune.units import EV_PER_A3_PER_GPA, KB_EV_PER_K, fs_to_internal


def _combined_mean_and_error(series: torch.Tensor) -> tuple[float, float]:
    """Mean over independent systems (columns) and its standard error from blocking."""
    errors = torch.stack([standard_error_of_mean(series[:, k]) for k in range(series.shape[1])])
    return float(series.mean()), float(errors.pow(2).sum().sqrt() / series.shape[1])


@pytest.mark.parametrize(
    ("cell_mode", "thermostat"),
    [("isotropic", "vrescale"), ("anisotropic", "vrescale"), ("axial", "langevin")],
)
def test_crescale_samples_exact_ideal_gas_volume_distribution(cell_mode, thermostat):
    """⟨V⟩ = N kT/P and Var V = N (kT/P)² (NPT with fixed centre of mass, exact).

    Holds for every cell mode (axial: only L_z moves). Velocity rescaling conserves the total
    momentum (3N − 3 kinetic degrees of freedom); the Langevin thermostat thermalises the
    centre of mass too, and the exact result becomes ⟨V⟩ = (N + 1) kT/P,
    Var V = (N + 1)(kT/P)²: the test tells the two apart.

    A barostat that got the Jacobian wrong would give (N+1) kT/P (25% more for N = 4);
    one that only controls the mean (Berendsen) would give far too small a variance.
    """
    n_atoms, n_systems, temperature = 4, 32, 300.0
    rng = np.random.default_rng(0)
    kT = KB_EV_PER_K * temperature
    pressure = n_atoms * kT / 8000.0  # ⟨V⟩ = 8000 Å³
    points = [
        StatePoint(
            name=f"gas{k}",
            phase="liquid",
            atoms=Atoms("Ar4", positions=rng.random((4, 3)) * 20, cell=[20] * 3, pbc=True),
            temperature_K=temperature,
            pressure_GPa=pressure / EV_PER_A3_PER_GPA,
            cell_mode=cell_mode,
        )
        for k in range(n_systems)
    ]
    settings = SamplerSettings(
        timestep_fs=5.0,
        equilibration_steps=500,
        production_steps=4000,
        stride=10,
        barostat_tau_fs=200.0,
        compressibility_per_GPa=1.0 / (pressure / EV_PER_A3_PER_GPA),
        check_phase=False,
        progress=False,
        seed=3,
        thermostat=thermostat,
    )
    frames, _ = sample_state_points(IdealGas(), points, settings)
    if cell_mode == "axial":
        lateral = frames.cell[:, :, :2, :2]
        assert torch.equal(lateral, lateral[:1].expand_as(lateral))
    mean, error = _combined_mean_and_error(frames.volume)
    n_eff = n_atoms + (thermostat == "langevin")
    expected = n_eff * kT / pressure
    assert abs(mean - expected) < 4 * error, (mean, expected, error)
    wrong = (2 * n_atoms + 1 - n_eff) * kT / pressure  # the other thermostat's answer
    assert abs(mean - wrong) > 6 * error
    variance = float(frames.volume.var())
    assert variance == pytest.approx(n_eff * (kT / pressure) ** 2, rel=0.12)


def test_lennard_jones_liquid_matches_nist_equation_of_state(argon):
    """NPT LJ liquid at T* = 0.85, P* = 0.5536 (r_c = 3σ, truncated, analytic tail corrections).

    Reference: NIST Standard Reference Simulation Website, Lennard-Jones fluid, MC NVT
    results at T* = 0.85 (r_c = 3σ with long-range corrections): at ρ* = 0.82,
    P* = 0.55355 and U*/N = −5.8260. NPT at that pressure must give back ρ* = 0.82 (within 2%),
    and the mean temperature and pressure must match their set points.
    """
    eps, sigma = argon["epsilon_eV"], argon["sigma_A"]
    temperature = 0.85 * argon["epsilon_K"]
    pressure_gpa = 0.55355 * eps / sigma**3 / EV_PER_A3_PER_GPA
    lattice = (4 / 0.80) ** (1 / 3) * sigma
    points = [
        StatePoint(
            name=f"liquid{k}",
            phase="liquid",
            atoms=build_structure("liquid", element="Ar", lattice_A=lattice, n_atoms=256),
            temperature_K=temperature,
            pressure_GPa=pressure_gpa,
        )
        for k in range(3)
    ]
    settings = SamplerSettings(
        timestep_fs=10.0,
        equilibration_steps=1500,
        melt_steps=300,
        melt_temperature_factor=1.6,
        production_steps=1800,
        stride=10,
        compressibility_per_GPa=1.0,
        progress=False,
        seed=1,
    )
    model = LennardJones(
        epsilon_eV=eps, sigma_A=sigma, cutoff_sigma=3.0, shift=False, tail_correction=True
    )
    frames, _ = sample_state_points(sampling_copy(model), points, settings)
    assert bool(frames.phase_ok.all()), frames.summary()
    density = float((256 / frames.volume).mean()) * sigma**3
    assert density == pytest.approx(0.82, rel=0.02)
    t_mean, t_err = _combined_mean_and_error(frames.temperature)
    assert abs(t_mean - temperature) < 3.5 * t_err, (t_mean, temperature, t_err)
    p_mean, p_err = _combined_mean_and_error(frames.pressure)
    assert abs(p_mean - pressure_gpa) < 3.5 * p_err, (p_mean, pressure_gpa, p_err)
    energy = float(frames.potential_energy.mean()) / 256 / eps
    assert energy == pytest.approx(-5.826, rel=0.02)


def test_hcp_stays_hcp_and_relaxes_c_over_a(argon):
    """Anisotropic C-rescale: hcp started at c/a = 1.55 and 1.72 relaxes to LJ's ≈ √(8/3)."""
    eps, sigma = argon["epsilon_eV"], argon["sigma_A"]
    a0 = 2 ** (1 / 6) * sigma
    starts = {"squashed": (1.02, 1.55), "stretched": (0.98, 1.72)}
    points = [
        StatePoint(
            name=name,
            phase="hcp",
            atoms=build_structure("hcp", element="Ar", lattice_A=a0 * da, c_over_a=ca, n_atoms=200),
            temperature_K=0.2 * argon["epsilon_K"],
            pressure_GPa=0.0,
        )
        for name, (da, ca) in starts.items()
    ]
    settings = SamplerSettings(
        timestep_fs=10.0,
        equilibration_steps=1000,
        production_steps=1500,
        stride=50,
        compressibility_per_GPa=0.5,
        progress=False,
    )
    model = LennardJones(epsilon_eV=eps, sigma_A=sigma, cutoff_sigma=2.5)
    frames, _ = sample_state_points(sampling_copy(model), points, settings)
    assert bool(frames.phase_ok.all()), frames.summary()
    ratios = []
    for k, point in enumerate(points):
        a_start = a0 * starts[point.name][0]
        c_start = a_start * starts[point.name][1]
        n_x, _, n_z = np.round(point.atoms.cell.lengths() / [a_start, 1.0, c_start])
        lengths = frames.cell[:, k].diagonal(dim1=-2, dim2=-1).mean(0).numpy()
        ratios.append((lengths[2] / n_z) / (lengths[0] / n_x))
    ideal = np.sqrt(8 / 3)
    # started 0.08 below and 0.09 above; instantaneous c/a fluctuates by ≈ 0.007 (std)
    assert ratios[0] == pytest.approx(ideal, abs=0.012)
    assert ratios[1] == pytest.approx(ideal, abs=0.012)
    assert abs(ratios[0] - ratios[1]) < 0.012


def test_nve_energy_drift_is_small(argon):
    """Velocity Verlet, LJ liquid (r_c = 2.5σ, shifted), dt = 5 fs (0.0023 τ), 10 ps.

    Bound: linear drift of the total energy below 1e-4 ε per atom per ps, and no excursion
    above 1e-3 ε per atom (measured over 20 ps: 2.4e-6 ε/atom/ps and 1.6e-4 ε/atom).
    """
    eps, sigma = argon["epsilon_eV"], argon["sigma_A"]
    liquid = build_structure(
        "liquid", element="Ar", lattice_A=(4 / 0.8) ** (1 / 3) * sigma, n_atoms=256
    )
    point = StatePoint(
        name="liquid",
        phase="liquid",
        atoms=liquid,
        temperature_K=argon["epsilon_K"],
        cell_mode="fixed",
    )
    settings = SamplerSettings(
        timestep_fs=5.0,
        equilibration_steps=400,
        melt_steps=200,
        production_steps=10,
        stride=10,
        check_phase=False,
        progress=False,
    )
    model = LennardJones(epsilon_eV=eps, sigma_A=sigma, cutoff_sigma=2.5, shift=True)
    _, md = sample_state_points(model, [point], settings)
    dt = torch.tensor(fs_to_internal(5.0), dtype=torch.float64)
    energies = []
    with torch.no_grad():
        for step in range(2000):
            md = nve_step(md, model, dt=dt)
            if step % 10 == 0:
                kinetic = 0.5 * (md.momenta**2 / md.masses[:, None]).sum()
                energies.append(float(md.energy.sum() + kinetic) / 256 / eps)
    energies = np.array(energies)
    times_ps = np.arange(len(energies)) * 10 * 5e-3
    slope = np.polyfit(times_ps, energies, 1)[0]
    assert abs(slope) < 1e-4
    assert np.abs(energies - energies[0]).max() < 1e-3


def _small_run(seed: int, tmp_path=None):
    atoms = build_structure("fcc", element="Ar", lattice_A=5.3, n_atoms=32)
    points = [
        StatePoint(name="solid", phase="fcc", atoms=atoms, temperature_K=40.0, pressure_GPa=0.1),
        StatePoint(name="hot", phase="fcc", atoms=atoms, temperature_K=60.0, pressure_GPa=0.0),
    ]
    settings = SamplerSettings(
        timestep_fs=5.0,
        equilibration_steps=20,
        production_steps=40,
        stride=10,
        progress=False,
        seed=seed,
    )
    model = LennardJones(epsilon_eV=0.0104, sigma_A=3.4, cutoff_sigma=2.2)
    return sample_state_points(sampling_copy(model), points, settings)[0]


def test_frames_hdf5_round_trip_is_exact(tmp_path):
    frames = _small_run(seed=5)
    path = frames.save(tmp_path / "frames.h5")
    loaded = Frames.load(path)
    assert loaded.equals(frames)
    assert loaded.positions.dtype == torch.float64
    assert loaded.n_frames == 4 and loaded.n_systems == 2
    with pytest.raises(FileNotFoundError):
        Frames.load(tmp_path / "missing.h5")


def test_frames_from_atoms_give_back_the_sampled_energies_and_volumes():
    """Frames built from ASE configurations of a run's frames hold the same configurations:
    the model's energies and the cells' volumes on them are the sampled ones."""
    one = _small_run(seed=5).select_system(1)
    configurations = [
        Atoms(
            numbers=one.atomic_numbers.numpy(),
            positions=one.positions[k].numpy(),
            cell=one.cell[k, 0].numpy(),
            masses=one.masses.numpy(),
            pbc=True,
        )
        for k in range(one.n_frames)
    ]
    rebuilt = Frames.from_atoms(configurations, state_point=one.state_points[0])
    model = LennardJones(epsilon_eV=0.0104, sigma_A=3.4, cutoff_sigma=2.2)
    energies = frame_energies(sampling_copy(model), rebuilt)
    torch.testing.assert_close(energies, one.potential_energy, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rebuilt.volume, one.volume, rtol=1e-12, atol=0)
    assert rebuilt.phase_ok.all() and torch.isnan(rebuilt.enthalpy).all()
    with pytest.raises(ValueError, match="configuration 1 has other atoms"):
        Frames.from_atoms([configurations[0], configurations[0][:-1]])
    with pytest.raises(ValueError, match="no configurations"):
        Frames.from_atoms([])


@pytest.mark.parametrize("thermostat", ["vrescale", "langevin"])
def test_a_state_point_samples_the_same_frames_alone_or_in_any_batch(argon, thermostat):
    """With one noise stream per state point (the default), a state point's frames depend on
    its own settings, name and the seed only: sampled alone, first or last in a batch with
    other state points (an anisotropic hcp crystal, a liquid that melts first) it gives the
    same frames bit for bit, so that measurements and training can be split across devices
    and jobs. With the batch generator the same runs differ (the check can fail)."""
    lj = LennardJones(epsilon_eV=argon["epsilon_eV"], sigma_A=argon["sigma_A"])
    fcc = build_structure("fcc", element="Ar", lattice_A=5.3, n_atoms=32)
    hcp = build_structure("hcp", element="Ar", lattice_A=3.75, n_atoms=36)
    liquid = build_structure("fcc", element="Ar", lattice_A=5.8, n_atoms=32)
    points = {
        "fcc": StatePoint(name="a/fcc", phase="fcc", atoms=fcc, temperature_K=60.0),
        "hcp": StatePoint(name="a/hcp", phase="hcp", atoms=hcp, temperature_K=50.0),
        "liquid": StatePoint(
            name="b/liquid", phase="liquid", atoms=liquid, temperature_K=95.0, pressure_GPa=0.01
        ),
    }

    def run(names, streams="state_point"):
        settings = SamplerSettings(
            timestep_fs=10.0,
            equilibration_steps=100,
            melt_steps=60,
            production_steps=60,
            stride=20,
            thermostat=thermostat,
            progress=False,
            seed=3,
            random_streams=streams,
            # no melt retries: a liquid melted again equilibrates the whole batch longer
            check_phase=False,
        )
        frames, _ = sample_state_points(lj, [points[n] for n in names], settings)
        return {n: frames.select_system(k) for k, n in enumerate(names)}

    together = run(["fcc", "hcp", "liquid"])
    reordered = run(["liquid", "hcp"])
    for name in ("hcp", "liquid"):
        alone = run([name])[name]
        for other in (together[name], reordered[name]):
            assert torch.equal(alone.positions, other.positions)
            assert torch.equal(alone.cell, other.cell)
            assert torch.equal(alone.potential_energy, other.potential_energy)
    shared = run(["fcc", "hcp", "liquid"], "batch")
    assert not torch.equal(shared["liquid"].positions, run(["liquid"], "batch")["liquid"].positions)


def test_runs_are_reproducible_from_the_seed():
    first, again, other = _small_run(seed=7), _small_run(seed=7), _small_run(seed=8)
    assert first.equals(again)
    assert not torch.equal(first.positions, other.positions)
    # the two systems of one batch get different noise
    assert not torch.equal(first.temperature[:, 0], first.temperature[:, 1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"phase": "plasma"}, "unknown phase"),
        ({"temperature_K": 0.0}, "temperature_K must be > 0"),
        ({"pressure_GPa": 5e4}, "beyond"),
        ({"cell_mode": "wobbly"}, "cell_mode"),
    ],
)
def test_bad_state_points_are_refused(kwargs, message):
    atoms = build_structure("fcc", element="Ar", lattice_A=5.3, n_atoms=4)
    base = dict(name="x", phase="fcc", atoms=atoms, temperature_K=50.0, pressure_GPa=0.0)
    with pytest.raises(ValueError, match=message):
        StatePoint(**{**base, **kwargs})


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="stride"):
        SamplerSettings(production_steps=10, stride=20)
    with pytest.raises(ValueError, match="timestep_fs"):
        SamplerSettings(timestep_fs=0.0)


def test_sampler_flags_frames_of_a_solid_that_melts(argon, caplog):
    """fcc argon held at 3× its melting point melts: its frames are flagged, a cold one is not."""
    eps, sigma = argon["epsilon_eV"], argon["sigma_A"]
    atoms = build_structure("fcc", element="Ar", lattice_A=5.45, n_atoms=108)
    points = [
        StatePoint(name="cold", phase="fcc", atoms=atoms, temperature_K=30.0, cell_mode="fixed"),
        StatePoint(name="hot", phase="fcc", atoms=atoms, temperature_K=260.0, cell_mode="fixed"),
    ]
    settings = SamplerSettings(
        timestep_fs=5.0, equilibration_steps=300, production_steps=200, stride=20, progress=False
    )
    model = LennardJones(epsilon_eV=eps, sigma_A=sigma, cutoff_sigma=2.5)
    with caplog.at_level("WARNING"):
        frames, _ = sample_state_points(sampling_copy(model), points, settings)
    assert bool(frames.phase_ok[:, 0].all())
    assert not bool(frames.phase_ok[:, 1].any())
    liquid = frames.phase_fractions[:, 1, 3]  # PHASES = (fcc, hcp, bcc, liquid)
    assert float(liquid.mean()) > 0.5
    assert "hot: 10/10 frames left the fcc phase" in caplog.text
    assert "no valid frame" in frames.summary()[1]


class _FailsAtCall(LennardJones):
    """A model that raises on its n-th call, to simulate a crash in the middle of a run."""

    def __init__(self, fail_at: int, **kwargs):
        super().__init__(**kwargs)
        self.calls, self.fail_at = 0, fail_at

    def forward(self, state, **kwargs):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("injected crash")
        return super().forward(state, **kwargs)


def test_frames_written_before_a_crash_survive_it(tmp_path):
    """Frames are saved every few frames, so a crash loses at most that many."""
    atoms = build_structure("fcc", element="Ar", lattice_A=5.3, n_atoms=32)
    point = StatePoint(name="solid", phase="fcc", atoms=atoms, temperature_K=40.0)
    path = tmp_path / "frames.h5"
    settings = SamplerSettings(
        timestep_fs=5.0,
        equilibration_steps=10,
        production_steps=100,
        stride=5,
        frames_path=str(path),
        save_every_frames=4,
        check_phase=False,
        progress=False,
    )
    # call 1 is the initial force evaluation, then one per step: crash at step 57
    model = _FailsAtCall(fail_at=58, epsilon_eV=0.0104, sigma_A=3.4, cutoff_sigma=2.2)
    with pytest.raises(RuntimeError, match="injected crash"):
        sample_state_points(model, [point], settings)
    saved = Frames.load(path)
    # steps 15, 20, ..., 55 made 9 frames; the last save was after frame 8 (step 50)
    assert saved.n_frames == 8
    assert saved.step.tolist() == list(range(15, 55, 5))
    # the saved frames are exactly those of an uninterrupted run with the same seed
    complete, _ = sample_state_points(
        LennardJones(epsilon_eV=0.0104, sigma_A=3.4, cutoff_sigma=2.2),
        [point],
        dataclasses.replace(settings, frames_path=None),
    )
    assert torch.equal(saved.positions, complete.positions[:8])


def test_hot_melt_of_a_liquid_at_zero_pressure_does_not_boil_it(argon):
    """Liquids melt at fixed cell: at 2·T ≈ 150 K ≈ 1.25 ε/k_B, near LJ's critical point,
    NPT at P = 0 would expand the box into a gas that does not recondense within a short
    equilibration (it left Δh 20–30 % too large). After the melt, NPT at 75 K must find
    the liquid's density (ρ* ≈ 0.83 near the triple point), not a vapour-filled box."""
    model = LennardJones(epsilon_eV=argon["epsilon_eV"], sigma_A=argon["sigma_A"])
    point = StatePoint(
        name="liquid",
        phase="liquid",
        atoms=build_structure("fcc", element="Ar", lattice_A=5.65, n_atoms=108),
        temperature_K=75.0,
        pressure_GPa=0.0,
    )
    settings = SamplerSettings(
        timestep_fs=10.0,
        equilibration_steps=400,
        melt_steps=300,
        production_steps=200,
        stride=20,
        compressibility_per_GPa=0.5,
        progress=False,
    )
    frames, _ = sample_state_points(model, [point], settings)
    density = 108 * argon["sigma_A"] ** 3 / frames.volume[:, 0]
    assert frames.phase_ok.all()  # it did melt
    assert float(density.min()) > 0.78 and float(density.max()) < 0.88, density


def test_internal_pressure_tensor_is_kinetic_over_volume_minus_stress():
    """P_int = Σ p⊗p/m / V − σ per system: Tr(P_int + σ)/3 = 2K/3V, and torch-sim's own
    expression (which the integrator used before) agrees componentwise."""
    from torch_sim.integrators.npt import NPTCRescaleState
    from torch_sim.quantities import compute_instantaneous_pressure_tensor

    from phasetune.sampling.integrator import internal_pressure_tensor

    generator = torch.Generator().manual_seed(3)
    n_atoms = torch.tensor([5, 7])
    system_idx = torch.repeat_interleave(torch.arange(2), n_atoms)
    masses = 1 + 40 * torch.rand(12, generator=generator, dtype=torch.float64)
    momenta = torch.randn(12, 3, generator=generator, dtype=torch.float64)
    stress = torch.randn(2, 3, 3, generator=generator, dtype=torch.float64)
    cell = torch.diag_embed(10 + torch.rand(2, 3, generator=generator, dtype=torch.float64))
    state = NPTCRescaleState(
        positions=torch.zeros(12, 3, dtype=torch.float64),
        masses=masses,
        cell=cell,
        pbc=True,
        atomic_numbers=torch.full((12,), 18),
        system_idx=system_idx,
        momenta=momenta,
        energy=torch.zeros(2, dtype=torch.float64),
        forces=torch.zeros(12, 3, dtype=torch.float64),
        stress=stress,
        tau_p=torch.ones(2, dtype=torch.float64),
        isothermal_compressibility=torch.ones(2, dtype=torch.float64),
        initial_cell=cell.clone(),
        initial_cell_inv=torch.linalg.inv(cell),
        initial_volume=torch.linalg.det(cell),
    )
    volume = torch.linalg.det(cell)
    ours = internal_pressure_tensor(state, volume)
    theirs = compute_instantaneous_pressure_tensor(
        momenta=momenta, masses=masses, system_idx=system_idx, stress=stress, volumes=volume
    )
    torch.testing.assert_close(ours, theirs, rtol=1e-13, atol=1e-15)
    kinetic = torch.zeros(2, dtype=torch.float64).index_add(
        0, system_idx, 0.5 * (momenta**2).sum(-1) / masses
    )
    trace = torch.diagonal(ours + stress, dim1=-2, dim2=-1).sum(-1)
    torch.testing.assert_close(trace / 3, 2 * kinetic / (3 * volume), rtol=1e-13, atol=0)


def _crescale_state(generator, n_atoms=(5, 7)):
    from torch_sim.integrators.npt import NPTCRescaleState

    n_atoms = torch.tensor(n_atoms)
    n, systems = int(n_atoms.sum()), len(n_atoms)
    cell = torch.diag_embed(10 + torch.rand(systems, 3, generator=generator, dtype=torch.float64))
    return NPTCRescaleState(
        positions=torch.zeros(n, 3, dtype=torch.float64),
        masses=1 + 40 * torch.rand(n, generator=generator, dtype=torch.float64),
        cell=cell,
        pbc=True,
        atomic_numbers=torch.full((n,), 18),
        system_idx=torch.repeat_interleave(torch.arange(systems), n_atoms),
        momenta=torch.randn(n, 3, generator=generator, dtype=torch.float64),
        energy=torch.zeros(systems, dtype=torch.float64),
        forces=torch.zeros(n, 3, dtype=torch.float64),
        stress=torch.zeros(systems, 3, 3, dtype=torch.float64),
        tau_p=torch.ones(systems, dtype=torch.float64),
        isothermal_compressibility=torch.ones(systems, dtype=torch.float64),
        initial_cell=cell.clone(),
        initial_cell_inv=torch.linalg.inv(cell),
        initial_volume=torch.linalg.det(cell),
    )


@pytest.mark.parametrize("streams", ["batch", "state_point"])
def test_vrescale_equals_torch_sims_and_samples_the_canonical_kinetic_energy(streams):
    """phasetune's Bussi thermostat (its own: torch-sim's is private API) makes the same
    draws as torch-sim 0.6's ``_vrescale_update`` and gives the same momenta bit for bit;
    and, applied alone for many steps, it samples K from the canonical Gamma(N_f/2, k_BT)
    distribution: ⟨K⟩ = N_f k_BT/2 and Var K = N_f (k_BT)²/2, with the batch generator and
    with one stream per system (whose χ² and normal draws are made per system)."""
    import torch_sim
    from torch_sim.integrators.nvt import _vrescale_update

    from phasetune.sampling.integrator import vrescale_update
    from phasetune.sampling.noise import noise_for

    assert torch_sim.__version__.startswith("0.6"), "re-check the parity against this version"
    kT = torch.tensor([0.01, 0.03], dtype=torch.float64)
    tau, dt = torch.full((2,), 5.0, dtype=torch.float64), torch.full((2,), 0.5, dtype=torch.float64)
    ours, theirs = (_crescale_state(torch.Generator().manual_seed(5)) for _ in range(2))
    ours.rng, theirs.rng = (torch.Generator().manual_seed(11) for _ in range(2))
    for _ in range(20):
        ours = vrescale_update(ours, tau, kT, dt)
        theirs = _vrescale_update(theirs, tau, kT, dt)
    assert torch.equal(ours.momenta, theirs.momenta)
    # canonical kinetic energy: 4000 steps of τ/10, sampled every 10 steps (≈ 1 τ apart)
    state = _crescale_state(torch.Generator().manual_seed(7), n_atoms=(4, 30))
    state.rng = torch.Generator().manual_seed(13)
    dof = state.get_number_of_degrees_of_freedom()
    noise = noise_for(streams, 13, ["small", "large"])
    samples = []
    for step in range(4000):
        state = vrescale_update(state, tau, kT, dt, noise)
        if step >= 100 and step % 10 == 0:
            samples.append(dof * state.calc_kT() / 2)
    kinetic = torch.stack(samples)
    n = kinetic.shape[0]
    mean_expected, var_expected = dof * kT / 2, dof * kT**2 / 2
    # standard errors of the mean and of the variance of a Gamma sample (nearly independent
    # samples 1 τ apart; 4σ)
    mean_error = torch.sqrt(var_expected / n)
    assert torch.all((kinetic.mean(0) - mean_expected).abs() < 4 * 1.5 * mean_error)
    shape = dof / 2
    var_error = var_expected * torch.sqrt((2 + 6 / shape) / n)
    assert torch.all((kinetic.var(0) - var_expected).abs() < 4 * 1.5 * var_error)


def test_a_liquid_that_did_not_melt_is_melted_again_hotter(argon, monkeypatch, caplog):
    """A liquid started as a crystal that the first hot stage (0.5·T = 50 K, far below
    argon's melting point) leaves solid is melted again hotter (retry heating set to 4×
    here: 200 K) and then samples a liquid at 100 K; a solid in the same batch is unharmed."""
    import phasetune.sampling.sampler as sampler

    monkeypatch.setattr(sampler, "MELT_RETRY_HEATING", 4.0)
    model = LennardJones(epsilon_eV=argon["epsilon_eV"], sigma_A=argon["sigma_A"])
    crystal = build_structure("fcc", element="Ar", lattice_A=5.6, n_atoms=108)
    points = [
        StatePoint(name="liquid", phase="liquid", atoms=crystal, temperature_K=100.0),
        StatePoint(name="solid", phase="fcc", atoms=crystal, temperature_K=40.0),
    ]
    settings = SamplerSettings(
        timestep_fs=10.0,
        equilibration_steps=400,
        melt_steps=200,
        melt_temperature_factor=0.5,
        production_steps=200,
        stride=20,
        compressibility_per_GPa=0.5,
        progress=False,
    )
    with caplog.at_level("WARNING"):
        frames, _ = sample_state_points(model, points, settings)
    assert "melting them again at 2.00 T for 400 steps" in caplog.text
    assert frames.metadata["melt_attempts"] == 2
    # everyone equilibrated 400 steps longer, production is unchanged
    assert frames.step.tolist() == list(range(820, 1001, 20))
    assert frames.phase_ok.all()
    assert float(frames.phase_fractions[:, 0, 3].min()) > 0.9  # liquid: liquid-like atoms
    assert float(frames.phase_fractions[:, 1, 0].min()) > 0.9  # solid: still fcc


def test_a_liquid_that_never_melts_is_refused_after_the_last_attempt(argon):
    """Hot stages at 0.3, 0.375 and 0.47 × 100 K leave fcc argon solid: one clear error."""
    model = LennardJones(epsilon_eV=argon["epsilon_eV"], sigma_A=argon["sigma_A"])
    point = StatePoint(
        name="stuck",
        phase="liquid",
        atoms=build_structure("fcc", element="Ar", lattice_A=5.4, n_atoms=32),
        temperature_K=100.0,
    )
    settings = SamplerSettings(
        timestep_fs=10.0,
        equilibration_steps=100,
        melt_steps=100,
        melt_temperature_factor=0.3,
        production_steps=20,
        stride=20,
        progress=False,
    )
    with pytest.raises(RuntimeError, match=r"did not melt after 3 attempts.*0\.47 T.*stuck 0\.0"):
        sample_state_points(model, [point], settings)
