"""The boxes of a coexistence run, run: each box's numbers as a record of its own.

:func:`measure_boxes` takes boxes given as (pressure index, T, replica, name), sets each
pressure's lattice from an NPT run of the bulk solid at its guess, melts the upper halves
(:func:`~phasetune.free_energy.two_phase_box.melt_upper_half`) and runs the two-phase boxes
in NPT, all in one batch. Each box's record (interface velocity and its error, solid
fraction over time, converted fraction, mean T and P) depends on its name and the run's
inputs only (noise seeded by name, exact frame means), so boxes run in separate jobs and
merged give what one batch gives, unless a melt stage has to try again (it does so for its
whole batch, with a warning); :mod:`.coexistence` fits them.
"""

from __future__ import annotations

import math

import numpy as np

from phasetune.free_energy.interface_velocity import (
    TRANSFORMED_FRACTION,
    converted_fraction,
    frame_mean,
    interface_velocities,
    interface_velocity_errors,
)
from phasetune.free_energy.two_phase_box import elongated_solid, melt_upper_half
from phasetune.sampling.phase_check import LIQUID_INDEX, phase_fractions
from phasetune.sampling.sampler import StatePoint, sample_state_points


def measure_boxes(
    model, solid_atoms, solid_phase, specs, pressures, guesses, settings, device, dtype
) -> list[dict]:
    """Run the boxes ``specs`` (solid, melt, coexistence NPT) in one batch; one record each:
    the box's interface velocity and its error, solid fraction over time, converted
    fraction, transformed flag, mean T and P (1-element arrays, exact through JSON)."""
    # 1. the bulk solid at each (guess, P) of these boxes: its average cell sets the lattice
    needed = sorted({k for k, _, _, _ in specs})
    solid_points = [
        StatePoint(
            name=f"{solid_phase} at {pressures[k]:g} GPa, {guesses[k]:g} K",
            phase=solid_phase,
            atoms=solid_atoms,
            temperature_K=guesses[k],
            pressure_GPa=pressures[k],
        )
        for k in needed
    ]
    stride = max(1, settings.solid_steps // 20)
    solid_frames, _ = sample_state_points(
        model,
        solid_points,
        settings.sampler_settings(
            equilibration_steps=settings.solid_steps // 2,
            production_steps=max(stride, settings.solid_steps - settings.solid_steps // 2),
            stride=stride,
            seed=settings.seed,
        ),
        device=device,
        dtype=dtype,
    )
    box_of = {}
    for column, k in enumerate(needed):
        p, guess = pressures[k], guesses[k]
        ok = solid_frames.phase_ok[:, column]
        if not bool(ok.any()):
            raise RuntimeError(
                f"the {solid_phase} solid did not stay {solid_phase} at {guess:g} K, {p:g} GPa "
                "(superheated past its stability limit?); lower the guess"
            )
        solid = solid_atoms.copy()
        solid.set_cell(solid_frames.cell[ok, column].mean(0).numpy(), scale_atoms=True)
        slab_repeat = max(1, math.ceil(settings.min_slab_A / solid.cell.array[2, 2] - 1e-9))
        box_of[k] = elongated_solid(solid, settings.z_repeat * slab_repeat)
    temps = [t for _, t, _, _ in specs]
    box_pressures = [pressures[k] for k, _, _, _ in specs]
    names = [name for _, _, _, name in specs]

    # 2. melt the upper halves, all boxes in one batch, each quenched to its own T
    boxes = melt_upper_half(
        model,
        [box_of[k] for k, _, _, _ in specs],
        temperatures_K=temps,
        pressures_GPa=box_pressures,
        names=names,
        settings=settings,
        device=device,
        dtype=dtype,
    )

    # 3. coexistence NPT, every axis free
    points = [
        StatePoint(
            name=name,
            phase=solid_phase,
            atoms=b,
            temperature_K=t,
            pressure_GPa=p,
            cell_mode="anisotropic",
        )
        for name, b, t, p in zip(names, boxes, temps, box_pressures, strict=True)
    ]
    frames, _ = sample_state_points(
        model,
        points,
        settings.sampler_settings(
            equilibration_steps=settings.equilibration_steps,
            production_steps=settings.production_steps,
            stride=settings.stride,
            seed=settings.seed + 1,
            check_phase=False,
        ),
        device=device,
        dtype=dtype,
    )
    every_phase = np.stack(
        [
            phase_fractions(frames.positions[f], frames.cell[f], frames.system_idx).numpy()
            for f in range(frames.n_frames)
        ]
    )  # [frames, boxes, phases]
    fractions = 1.0 - every_phase[..., LIQUID_INDEX]
    fifth = max(1, frames.n_frames // 5)
    converted = converted_fraction(
        frame_mean(every_phase[:fifth]), frame_mean(every_phase[-fifth:]), solid_phase
    )
    time_ps = (frames.step.numpy() - frames.step.numpy()[0]) * settings.timestep_fs * 1e-3
    length_z = frame_mean(frames.cell[:, :, 2, 2].numpy())
    velocities = interface_velocities(time_ps, fractions, length_z, settings.saturation)
    errors = interface_velocity_errors(time_ps, fractions, length_z, settings.saturation)
    mean_t = frame_mean(frames.temperature.numpy())
    mean_p = frame_mean(frames.pressure.numpy())
    return [
        {
            "velocity_A_per_ps": velocities[i : i + 1],
            "velocity_error_A_per_ps": errors[i : i + 1],
            "solid_fraction": fractions[:, i],
            "converted_fraction": converted[i : i + 1],
            "transformed": converted[i : i + 1] > TRANSFORMED_FRACTION,
            "mean_temperature_K": mean_t[i : i + 1],
            "mean_pressure_GPa": mean_p[i : i + 1],
            "time_ps": time_ps,
            "n_atoms": len(boxes[i]),
        }
        for i in range(len(specs))
    ]
