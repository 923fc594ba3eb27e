"""NPT cell strains of Ti1 hcp 240 / bcc 250 at 1155 K: their spread and correlation times.

    .venv/bin/python -m bench.ti1.cell_fluctuations

1,000 + 16,000 steps of 3 fs (stride 5) per crystal, as ``preset=quick``'s NPT otherwise;
per mode (ln V, log axis lengths) the standard deviation and the statistical inefficiency in
ps, and the expected cost (k_BT/2N) Σ_m g_m/T of switching in the mean cell of a T-ps run
(3 modes for hcp's anisotropic barostat, 1 for bcc's isotropic one; bench/ti1/cell_noise.py
tests that cost directly).
"""

import torch

from bench.common import threads_from_env
from phasetune.potentials.eam import mendelev_ti1
from phasetune.sampling.sampler import SamplerSettings, StatePoint, sample_state_points
from phasetune.structures import build_structure
from phasetune.thermo.statistics import statistical_inefficiency
from phasetune.units import KB_EV_PER_K

torch.set_num_threads(threads_from_env())
kT = KB_EV_PER_K * 1155.0
model = mendelev_ti1()
for phase, n, lat in [
    ("hcp", 240, dict(lattice_A=2.95, c_over_a=1.587)),
    ("bcc", 250, dict(lattice_A=3.31)),
]:
    atoms = build_structure(phase, element="Ti", n_atoms=n, **lat)
    frames, _ = sample_state_points(
        model,
        [StatePoint(name="npt", phase=phase, atoms=atoms, temperature_K=1155.0)],
        SamplerSettings(
            timestep_fs=3.0,
            equilibration_steps=1000,
            production_steps=16000,
            stride=5,
            barostat_tau_fs=1000.0,
            compressibility_per_GPa=0.02,
            thermostat="langevin",
            seed=0,
            progress=False,
        ),
    )
    cells = frames.cell[:, 0].double()
    lengths = torch.linalg.norm(cells, dim=-1)  # [F, 3]
    logl = torch.log(lengths)
    modes = {"volume": logl.sum(-1), "x": logl[:, 0], "y": logl[:, 1], "z": logl[:, 2]}
    dt_ps = 5 * 3.0 / 1000
    out = []
    for name, s in modes.items():
        g = float(statistical_inefficiency(s))  # 1 + 2 tau in frames
        out.append(f"{name}: std {float(s.std()):.4f} g {g:.1f} frames = {g * dt_ps:.2f} ps")
    # expected bias of G/N from the mean cell of a T-ps run: kT/(2N) * sum over cell modes of g*dt/T
    g_modes = (
        [float(statistical_inefficiency(logl[:, i])) for i in range(3)]
        if phase == "hcp"
        else [float(statistical_inefficiency(modes["volume"]))]
    )
    for T in (3.0, 12.0, 24.0):
        bias = kT / (2 * n) * sum(g * dt_ps / T for g in g_modes)
        out.append(f"bias for {T:g} ps production: {bias * 1e3:.3f} meV/atom")
    print(phase, "; ".join(out), flush=True)
