"""Which crystal grows in a Ti1 hcp|liquid coexistence box? Phase fractions over time.

    .venv/bin/python -m bench.ti1.hcp_coexistence_phases [GUESS_K] [WINDOW] [STEPS] [prismatic]

Above the α–β transition (1150 K for Ti1) hcp is metastable: its melting point (1765 K
published) lies below bcc's (1918 K). Between the two, a liquid in contact with hcp may
crystallise as bcc, and the coexistence route counts every solid-like atom as solid
(x_s = 1 − x_liquid). This runs ``melting_temperatures_coexistence`` for hcp with
``preset=quick``'s settings (3 fs, slabs ≥ 40 Å, 9 ps; 3 temperatures × 1 replica) and
records each frame's fractions of hcp, bcc, fcc and liquid (and each box's mean pressure
and cell), then prints the interface
velocity read from all solid-like atoms (what the route uses) and from hcp atoms only.
One JSON line per box goes to stdout, with its solid fraction at every recorded frame
(``x_solid``) so that early transients can be told from steady growth; ``REPLICAS=n`` in the
environment runs n replicas per temperature (default 1); ``LATERAL=nx,ny`` repeats the
240-atom cell across the interface (default 1,1: a 15 × 15 Å cross-section).
``TIMESTEP_FS=dt`` runs the boxes with that step (default: the preset's 3 fs; STEPS is then
scaled so that production lasts as long as STEPS × 3 fs), ``MIN_SLAB_A=L`` makes each slab at
least L Å long (default: the preset's 40 Å), ``SEED=n`` seeds the noise (default 0).
``prismatic`` turns the crystal so that the c axis lies along x and the interfaces are
prismatic planes instead of basal ones (the default).
"""

import dataclasses
import json
import os
import sys
import time

import numpy as np
import torch

import phasetune.free_energy.coexistence_boxes as coexistence
from bench.common import quick_preset, threads_from_env
from phasetune.free_energy.coexistence import melting_temperatures_coexistence
from phasetune.free_energy.interface_velocity import interface_velocities
from phasetune.potentials.eam import mendelev_ti1
from phasetune.structures import PHASES, build_structure

guess = float(sys.argv[1]) if len(sys.argv) > 1 else 1765.0
window = float(sys.argv[2]) if len(sys.argv) > 2 else 0.05
production = int(sys.argv[3]) if len(sys.argv) > 3 else 3000
prismatic = len(sys.argv) > 4 and sys.argv[4] == "prismatic"
torch.set_num_threads(threads_from_env())

recorded: list[np.ndarray] = []
_phase_fractions = coexistence.phase_fractions


def recording_phase_fractions(*args, **kwargs):
    fractions = _phase_fractions(*args, **kwargs)
    recorded.append(fractions.numpy().copy())
    return fractions


coexistence.phase_fractions = recording_phase_fractions
sampled: list = []
_sample_state_points = coexistence.sample_state_points


def recording_sample_state_points(*args, **kwargs):
    frames, rest = _sample_state_points(*args, **kwargs)
    sampled.append(frames)
    return frames, rest


coexistence.sample_state_points = recording_sample_state_points
preset = quick_preset().coexistence
timestep_fs = float(os.environ.get("TIMESTEP_FS", preset.timestep_fs))
stretch = preset.timestep_fs / timestep_fs  # same physical times at another step
settings = dataclasses.replace(
    preset,
    timestep_fs=timestep_fs,
    solid_steps=round(preset.solid_steps * stretch),
    melt_steps=round(preset.melt_steps * stretch),
    quench_steps=round(preset.quench_steps * stretch),
    equilibration_steps=round(preset.equilibration_steps * stretch),
    production_steps=round(production * stretch),
    stride=round(preset.stride * stretch),
    min_slab_A=float(os.environ.get("MIN_SLAB_A", preset.min_slab_A)),
    progress=False,
    seed=int(os.environ.get("SEED", "0")),
)
hcp = build_structure("hcp", element="Ti", lattice_A=2.95, c_over_a=1.587, n_atoms=240)
lateral = [int(n) for n in os.environ.get("LATERAL", "1,1").split(",")]
hcp = hcp.repeat((lateral[0], lateral[1], 1))
if prismatic:  # (x, y, z) -> (z, x, y): c along x, the interface normal along a former y
    cell = np.diag(hcp.cell.array)
    hcp.set_cell(np.diag(cell[[2, 0, 1]]))
    hcp.set_positions(hcp.get_positions()[:, [2, 0, 1]])
start = time.perf_counter()
(result,) = melting_temperatures_coexistence(
    mendelev_ti1(dtype=torch.float64),
    hcp,
    solid_phase="hcp",
    pressures_GPa=[0.0],
    guesses_K=[guess],
    window=window,
    n_temperatures=3,
    n_replicas=int(os.environ.get("REPLICAS", "1")),
    settings=settings,
)
fractions = np.stack(recorded[-len(result.time_ps) :])  # [frames, boxes, phases]
v_all = result.velocity_A_per_ps
for b, t in enumerate(result.temperatures_K):
    x = {p: fractions[:, b, i] for i, p in enumerate(PHASES)}
    print(
        json.dumps(
            {
                "T_K": round(float(t), 1),
                "replica": int(result.replica[b]),
                "v_solid_A_per_ps": round(float(v_all[b]), 3),
                "start": {p: round(float(x[p][0]), 3) for p in PHASES},
                "end": {p: round(float(x[p][-1]), 3) for p in PHASES},
                "mean_T_K": round(float(sampled[-1].temperature[:, b].mean()), 1),
                "pressure_GPa": round(float(sampled[-1].pressure[:, b].mean()), 3),
                "pressure_error_GPa": round(
                    float(sampled[-1].pressure[:, b].std() / len(sampled[-1].pressure) ** 0.5), 3
                ),
                "cell_A": np.diagonal(sampled[-1].cell[:, b].mean(0).numpy()).round(2).tolist(),
                "wall_s": round(time.perf_counter() - start),
                "x_solid": result.solid_fraction[:, b].round(4).tolist(),
            }
        )
    )
slopes_hcp = interface_velocities(
    result.time_ps,
    fractions[:, :, PHASES.index("hcp")],
    np.ones(fractions.shape[1]),
    settings.saturation,
)
slopes_all = interface_velocities(
    result.time_ps, result.solid_fraction, np.ones(fractions.shape[1]), settings.saturation
)
print(
    json.dumps(
        {
            "T_m_K": result.melting_temperature_K,
            "error_K": result.error_K,
            "d_solid_fraction_per_ps": slopes_all.round(4).tolist(),
            "d_hcp_fraction_per_ps": slopes_hcp.round(4).tolist(),
        }
    )
)
