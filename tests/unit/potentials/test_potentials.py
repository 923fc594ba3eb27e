"""Lennard-Jones model: energies, forces, stress, parameter gradients, neighbour list."""

import numpy as np
import pytest
import torch
import torch_sim as ts
from ase.build import bulk
from torch_sim.models.lennard_jones import LennardJonesModel

from phasetune.potentials.base import sampling_copy
from phasetune.potentials.lennard_jones import LennardJones
from phasetune.potentials.neighbors import VerletList


def _states():
    cubic = bulk("Ar", "fcc", a=5.3, cubic=True).repeat((4, 4, 4))
    cubic.rattle(0.15, seed=1)
    triclinic = bulk("Ar", "fcc", a=5.3).repeat((6, 6, 6))  # primitive, 60° cell
    triclinic.rattle(0.15, seed=2)
    return ts.io.atoms_to_state([cubic, triclinic], device="cpu", dtype=torch.float64)


def test_matches_torch_sim_reference_and_autograd(argon):
    state = _states()
    ours = LennardJones(epsilon_eV=0.0104, sigma_A=3.4, cutoff_sigma=2.5, shift=False)
    reference = LennardJonesModel(
        sigma=3.4, epsilon=0.0104, cutoff=8.5, dtype=torch.float64, compute_stress=True
    )
    out, ref = ours(state), reference(state)
    torch.testing.assert_close(out["energy"].detach(), ref["energy"], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out["forces"], ref["forces"], rtol=0, atol=1e-12)
    torch.testing.assert_close(out["stress"], ref["stress"], rtol=0, atol=1e-14)
    # forces are minus the gradient of the energy
    positions = state.positions.clone().requires_grad_(True)
    moved = state.clone()
    moved.positions = positions
    (grad,) = torch.autograd.grad(ours(moved)["energy"].sum(), positions)
    torch.testing.assert_close(out["forces"], -grad, rtol=0, atol=1e-12)


def test_stress_is_strain_derivative_of_energy(strain_derivative):
    """stress_ab = (1/V) ∂U/∂ε_ab, by central differences of a homogeneous strain."""
    state = _states()
    model = LennardJones(epsilon_eV=0.0104, sigma_A=3.4, cutoff_sigma=2.5, shift=True)
    stress = model(state)["stress"]

    def energy(strained):
        fresh = LennardJones(epsilon_eV=0.0104, sigma_A=3.4, cutoff_sigma=2.5, shift=True)
        return fresh(strained)["energy"]

    for a, b in [(0, 0), (1, 1), (0, 1), (1, 2)]:
        numeric = strain_derivative(energy, state, a, b, h=1e-6)
        torch.testing.assert_close(stress[:, a, b], numeric, rtol=1e-6, atol=1e-10)


def test_parameter_gradients_match_finite_differences():
    state = _states()
    model = LennardJones(epsilon_eV=0.0104, sigma_A=3.4, cutoff_sigma=2.5, tail_correction=True)
    energy = model(state)["energy"].sum()
    d_eps, d_sig = torch.autograd.grad(energy, [model.epsilon, model.sigma])
    # energy is linear in ε: ∂U/∂ε = U/ε
    torch.testing.assert_close(d_eps, energy.detach() / model.epsilon.detach(), rtol=1e-12, atol=0)
    h = 1e-6
    values = []
    for sign in (1, -1):
        with torch.no_grad():
            model.sigma.fill_(3.4 + sign * h)
        values.append(model(state)["energy"].sum().detach())
    torch.testing.assert_close(d_sig, (values[0] - values[1]) / (2 * h), rtol=1e-6, atol=0)


def test_tail_correction_values(argon):
    """E_tail and P_tail agree with the closed forms of Allen & Tildesley (g(r)=1 beyond r_c)."""
    atoms = bulk("Ar", "fcc", a=5.6, cubic=True).repeat((4, 4, 4))
    state = ts.io.atoms_to_state([atoms], device="cpu", dtype=torch.float64)
    kwargs = dict(epsilon_eV=argon["epsilon_eV"], sigma_A=argon["sigma_A"], cutoff_sigma=3.0)
    plain = LennardJones(**kwargs, shift=False)(state)
    tail = LennardJones(**kwargs, shift=False, tail_correction=True)(state)
    rho_star = len(atoms) / atoms.get_volume() * argon["sigma_A"] ** 3
    e_tail = (8 / 3) * np.pi * rho_star * ((1 / 3) * 3.0**-9 - 3.0**-3)  # per atom, units of ε
    p_tail = (16 / 3) * np.pi * rho_star**2 * ((2 / 3) * 3.0**-9 - 3.0**-3)  # units of ε/σ³
    d_energy = (tail["energy"] - plain["energy"]).item() / len(atoms) / argon["epsilon_eV"]
    d_pressure = -(tail["stress"] - plain["stress"])[0].diagonal().mean().item()
    assert d_energy == pytest.approx(e_tail, rel=1e-10)
    assert d_pressure * argon["sigma_A"] ** 3 / argon["epsilon_eV"] == pytest.approx(
        p_tail, rel=1e-10
    )


def test_verlet_list_matches_brute_force_after_wrapping_and_deformation():
    """The skin list sees every pair within the cutoff after moves, wraps and cell strain."""
    rng = np.random.default_rng(0)
    atoms = bulk("Ar", "fcc", a=5.3).repeat((5, 5, 5))
    state = ts.io.atoms_to_state([atoms], device="cpu", dtype=torch.float64)
    cutoff = 8.0
    verlet = VerletList(cutoff, skin=1.0)
    for _ in range(15):
        state.positions = state.positions + torch.from_numpy(rng.normal(0, 0.08, (len(atoms), 3)))
        strain = torch.eye(3, dtype=torch.float64) + torch.from_numpy(rng.normal(0, 0.004, (3, 3)))
        state.positions = state.positions @ strain.T
        state.row_vector_cell = state.row_vector_cell @ strain.T
        # wrap positions back into the cell explicitly
        frac = torch.linalg.solve(state.row_vector_cell[0].T, state.positions.T).T
        state.positions = (frac % 1.0) @ state.row_vector_cell[0]
        pairs = verlet.pair_vectors(state.positions, state.row_vector_cell, state.system_idx)
        r = pairs.vectors.norm(dim=-1)
        ours = np.sort(r[r < cutoff].numpy())
        # brute force over images
        pos = state.positions.numpy()
        cell = state.row_vector_cell[0].numpy()
        shifts = np.array(
            [[i, j, k] for i in range(-2, 3) for j in range(-2, 3) for k in range(-2, 3)]
        )
        d = pos[None, :, None, :] - pos[:, None, None, :] + (shifts @ cell)[None, None]
        dist = np.linalg.norm(d, axis=-1)
        iu = np.triu_indices(len(pos), k=1)
        brute = np.sort(dist[iu][dist[iu] < cutoff])
        assert len(ours) == len(brute)
        np.testing.assert_allclose(ours, brute, atol=1e-10)
    assert 1 < verlet.n_builds < 15  # rebuilt when needed, not every call


def test_sampling_copy_is_detached_and_equal():
    model = LennardJones(epsilon_eV=0.0104, sigma_A=3.4)
    frozen = sampling_copy(model)
    assert all(p.requires_grad for p in model.parameters())
    assert not any(p.requires_grad for p in frozen.parameters())
    state = _states()
    torch.testing.assert_close(frozen(state)["energy"], model(state)["energy"].detach())


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="epsilon_eV"):
        LennardJones(epsilon_eV=-1.0, sigma_A=3.4)
    with pytest.raises(ValueError, match="cutoff"):
        VerletList(-1.0)


def test_vesin_half_list_equals_the_halved_full_list_with_images_and_unwrapped_atoms():
    """The direct half list (one vesin call per system) holds the same pairs as torch-sim's
    full list halved: same distances, each unordered pair once, self-images included."""
    from phasetune.potentials.neighbors import _build_pairs, _half_list, _vesin_half_pairs

    small = bulk("Ar", "fcc", a=5.3).repeat((2, 2, 2))  # 8 atoms, cell < 2 × cutoff
    small.rattle(0.2, seed=3)
    small.positions += np.array([7.0, -12.0, 3.0])  # far outside the cell
    big = bulk("Ar", "fcc", a=5.3, cubic=True).repeat((3, 3, 3))
    big.rattle(0.2, seed=4)
    state = ts.io.atoms_to_state([small, big], device="cpu", dtype=torch.float64)
    cell = state.row_vector_cell
    cutoff = 9.0

    def distances(i, j, shifts):
        image = shifts.to(torch.float64)
        d = state.positions[j] - state.positions[i]
        d = d + torch.einsum("pk,pkl->pl", image, cell[state.system_idx[i]])
        key = state.system_idx[i].double() * 1e3 + d.norm(dim=-1)
        return np.sort(key.numpy())

    reference = _half_list(*_build_pairs(state.positions, cell, state.system_idx, cutoff))
    direct = _vesin_half_pairs(state.positions, cell, state.system_idx, cutoff)
    assert len(direct[0]) == len(reference[0]) and (direct[0] == direct[1]).any()  # self-images
    np.testing.assert_allclose(distances(*direct), distances(*reference), atol=1e-9)
    assert distances(*direct).max() % 1e3 < cutoff


def test_energies_only_switches_outputs_through_the_public_properties(argon):
    """Inside the block the model is asked for U alone (through compute_forces and
    compute_stress, not torch-sim's private attributes; MACE then keeps the energy's graph),
    gives the same U, and is restored after it."""
    from phasetune.potentials.evaluation import energies_only
    from phasetune.structures import build_structure

    model = LennardJones(epsilon_eV=argon["epsilon_eV"], sigma_A=argon["sigma_A"])
    atoms = build_structure("fcc", element="Ar", lattice_A=5.3, n_atoms=32)
    atoms.rattle(0.05, seed=1)
    state = ts.io.atoms_to_state([atoms], device="cpu", dtype=torch.float64)
    full = model(state)
    with energies_only(model) as same:
        assert same is model and not model.compute_forces and not model.compute_stress
        energy = model(state)
    torch.testing.assert_close(energy["energy"], full["energy"], rtol=0, atol=0)
    assert model.compute_forces and model.compute_stress  # restored
    # torch-sim's own models refuse the setter: the flags its ModelInterface declares for
    # subclasses are switched instead (this fails if a torch-sim release drops them)
    from torch_sim.models.interface import ModelInterface

    assert {"_compute_forces", "_compute_stress"} <= set(ModelInterface.__annotations__)
    plain = LennardJonesModel(sigma=argon["sigma_A"], epsilon=argon["epsilon_eV"])
    with pytest.raises((NotImplementedError, AttributeError)):
        plain.compute_forces = False
    before = (plain.compute_forces, plain.compute_stress)
    with energies_only(plain):
        assert not plain.compute_forces and not plain.compute_stress
    assert (plain.compute_forces, plain.compute_stress) == before
