"""The two-phase box of a coexistence run: its settings, and how it is built.

An orthogonal solid supercell is repeated along z (:func:`elongated_solid`), then its upper
half is melted with the lower half held in place (:class:`FrozenAtoms`,
:func:`melt_upper_half`). :func:`static_compressibility_per_GPa` sets the barostat
coupling from the static lattice. The runs on these boxes are in :mod:`.coexistence`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np
import torch
import torch_sim as ts
from ase import Atoms
from torch_sim.models.interface import ModelInterface
from torch_sim.state import SimState
from tqdm.auto import tqdm

from phasetune.potentials.base import ModelBase
from phasetune.sampling.integrator import crescale_init, crescale_step, ensemble_targets
from phasetune.sampling.noise import noise_for
from phasetune.sampling.phase_check import LIQUID_INDEX, classify_atoms
from phasetune.sampling.sampler import MELT_ATTEMPTS, MELT_RETRY_HEATING, reset_neighbor_lists
from phasetune.settings import CoexistenceSettings
from phasetune.units import EV_PER_A3_PER_GPA, KB_EV_PER_K, fs_to_internal

log = logging.getLogger(__name__)

#: the hot stage has melted a box when this fraction of its mobile half is liquid; it is
#: judged before the quench, since regrowth from the interface while quenching is physics
MIN_MELTED_FRACTION = 0.6


class FrozenAtoms(ModelBase):
    """A model whose forces on the masked atoms are zero (they stay put if at rest)."""

    def __init__(self, model: ModelInterface, frozen: torch.Tensor) -> None:
        super().__init__(device=model.device, dtype=model.dtype)
        self.model = model
        self.register_buffer("frozen", frozen.to(torch.bool))

    def forward(self, state: SimState, **kwargs) -> dict[str, torch.Tensor]:
        out = dict(self.model(state))
        out["forces"] = out["forces"].masked_fill(self.frozen.unsqueeze(-1), 0.0)
        return out


def elongated_solid(atoms: Atoms, z_repeat: int) -> Atoms:
    """The solid supercell repeated ``z_repeat`` times along its third axis."""
    cell = np.asarray(atoms.cell.array)
    if np.abs(cell - np.diag(np.diag(cell))).max() > 1e-8:
        raise ValueError("coexistence needs an orthogonal solid cell (use build_structure)")
    return atoms.repeat((1, 1, z_repeat))


def static_compressibility_per_GPa(
    model: ModelInterface, atoms: Atoms, *, strain: float = 0.01, dtype=torch.float64
) -> float:
    """β = 1/B of the static lattice, B = V d²E/dV² by central differences at V(1 ± ε)."""
    boxes = []
    for f in (1 - strain, 1.0, 1 + strain):
        box = atoms.copy()
        box.set_cell(atoms.cell.array * f ** (1 / 3), scale_atoms=True)
        boxes.append(box)
    state = ts.io.atoms_to_state(boxes, device=model.device, dtype=dtype)
    energy = model(state)["energy"].detach().double().cpu()
    volume = atoms.get_volume()
    second = (energy[0] - 2 * energy[1] + energy[2]) / (strain * volume) ** 2
    bulk_GPa = float(volume * second) / EV_PER_A3_PER_GPA
    if not bulk_GPa > 0:
        raise ValueError(
            f"the solid is mechanically unstable at this lattice (B = {bulk_GPa:.3g} GPa); "
            "check the lattice constant"
        )
    return 1.0 / bulk_GPa


def melt_upper_half(
    model: ModelInterface,
    boxes: list[Atoms],
    *,
    temperatures_K: Sequence[float],
    pressures_GPa: Sequence[float],
    settings: CoexistenceSettings,
    device: torch.device,
    dtype: torch.dtype,
    names: Sequence[str] | None = None,
) -> list[Atoms]:
    """Melt the upper half (fractional z ≥ ½) of each box while the lower half stays put.

    ``names`` (one per box) give each box its own noise stream
    (:mod:`phasetune.sampling.noise`), so that a box melts the same way in any batch; None:
    one generator for the batch.

    The upper half is first stretched along z by ``liquid_expansion`` (a liquid is less
    dense than its solid), melted for ``melt_steps`` at ``melt_temperature_factor``·T in
    that fixed cell, then quenched for ``quench_steps`` to (T, P) with only L_z free
    (axial C-rescale, fast coupling), so that the liquid takes its own density instead of
    recrystallising under the pressure of the solid's. The frozen atoms are
    put back at their Cartesian positions after every step (so the barostat's affine
    rescaling moves only the liquid) and carry no momentum; the velocity-rescaling target
    is scaled by the mobile fraction, since the mobile atoms carry all the kinetic energy.
    Where less than :data:`MIN_MELTED_FRACTION` of some box's mobile atoms is liquid at the
    end of the hot stage, that stage is repeated hotter and longer (up to
    :data:`~phasetune.sampling.sampler.MELT_ATTEMPTS` times, on the sampler's schedule)
    before giving up; the quench runs once, after it.
    """
    stretched = []
    for box in boxes:
        box = box.copy()
        box.wrap()
        frac = box.get_scaled_positions()
        upper = frac[:, 2] >= 0.5
        e = settings.liquid_expansion
        frac[upper, 2] = 0.5 + (frac[upper, 2] - 0.5) * (1 + e)
        frac[:, 2] /= 1 + 0.5 * e
        cell = box.cell.array.copy()
        cell[2] *= 1 + 0.5 * e
        box.set_cell(cell, scale_atoms=False)
        box.set_scaled_positions(frac)
        stretched.append(box)
    boxes = stretched
    reset_neighbor_lists(model)  # the melt depends on its inputs only, not on earlier calls
    state = ts.io.atoms_to_state(boxes, device=device, dtype=dtype)
    state.rng = settings.seed + 7919

    def noise_of(attempt: int):
        seed = settings.seed + 7919 + attempt
        return None if names is None else noise_for("state_point", seed, list(names))

    noise = noise_of(0)
    frac_z = torch.cat([torch.as_tensor(b.get_scaled_positions(wrap=True)[:, 2]) for b in boxes])
    frozen = (frac_z < 0.5 / (1 + 0.5 * settings.liquid_expansion)).to(device)
    frozen_positions = state.positions[frozen].clone()
    mobile_fraction = torch.zeros(len(boxes), device=device, dtype=dtype).index_add(
        0, state.system_idx, (~frozen).to(dtype)
    ) / torch.bincount(state.system_idx, minlength=len(boxes)).to(dtype)
    kT = KB_EV_PER_K * torch.tensor(temperatures_K, device=device, dtype=dtype)
    pressure = EV_PER_A3_PER_GPA * torch.tensor(pressures_GPa, device=device, dtype=dtype)
    frozen_model = FrozenAtoms(model, frozen)
    coupling = settings.coupling()
    cool = ensemble_targets(
        kT=kT * mobile_fraction, pressure=pressure, cell_mode="axial", **coupling
    )
    cool = dataclasses.replace(
        cool, tau_barostat=cool.tau_barostat.clamp(max=fs_to_internal(200.0))
    )
    dt = torch.tensor(fs_to_internal(settings.timestep_fs), device=device, dtype=dtype)
    factor, melt_steps = settings.melt_temperature_factor, settings.melt_steps
    for attempt in range(MELT_ATTEMPTS):
        hot_kT = kT * factor * mobile_fraction
        hot = ensemble_targets(kT=hot_kT, pressure=pressure, cell_mode="fixed", **coupling)
        md = crescale_init(state, frozen_model, targets=hot, noise=noise)
        md.momenta = md.momenta.masked_fill(frozen.unsqueeze(-1), 0.0)
        for _ in tqdm(range(melt_steps), desc="melting half", disable=not settings.progress):
            md = crescale_step(md, frozen_model, dt=dt, targets=hot, noise=noise)
            md.positions[frozen] = frozen_positions
            md.momenta = md.momenta.masked_fill(frozen.unsqueeze(-1), 0.0)
        liquid = _mobile_liquid_fraction(md, frozen, len(boxes))
        log.info("melted halves: liquid fractions %s", [round(float(x), 2) for x in liquid])
        if float(liquid.min()) >= MIN_MELTED_FRACTION:
            break
        if attempt == MELT_ATTEMPTS - 1:
            raise RuntimeError(
                f"melting the upper half failed after {MELT_ATTEMPTS} attempts, the last "
                f"{melt_steps} steps at {factor:.2f} T (liquid fractions of the melted halves "
                f"{[round(float(x), 2) for x in liquid]}); the solid may be far above its "
                "melting point's guess, or the model unstable when hot"
            )
        log.warning(
            "melting the upper halves: liquid fractions %s after %d steps at %.2f T; "
            "trying %.2f T for %d steps",
            [round(float(x), 2) for x in liquid],
            melt_steps,
            factor,
            factor * MELT_RETRY_HEATING,
            2 * melt_steps,
        )
        factor, melt_steps = factor * MELT_RETRY_HEATING, 2 * melt_steps
        state.rng = settings.seed + 7919 + attempt + 1
        noise = noise_of(attempt + 1)
    for _ in tqdm(range(settings.quench_steps), desc="quench", disable=not settings.progress):
        md = crescale_step(md, frozen_model, dt=dt, targets=cool, noise=noise)
        md.positions[frozen] = frozen_positions
        md.momenta = md.momenta.masked_fill(frozen.unsqueeze(-1), 0.0)
    return ts.io.state_to_atoms(md)


def _mobile_liquid_fraction(md: SimState, frozen: torch.Tensor, n_boxes: int) -> torch.Tensor:
    """Fraction of each box's mobile (not frozen) atoms classified liquid, [n_boxes]."""
    liquid = classify_atoms(md.positions, md.row_vector_cell, md.system_idx) == LIQUID_INDEX
    mobile = ~frozen
    count = torch.zeros(n_boxes, dtype=torch.float64, device=frozen.device)
    melted = count.index_add(0, md.system_idx, (liquid & mobile).double())
    return melted / count.index_add(0, md.system_idx, mobile.double())
