"""The phasetune-sample entry point on a tiny configuration: files written and consistent."""

import csv

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from phasetune.cli import sample, state_points_from_config
from phasetune.configs import CONFIG_DIR
from phasetune.sampling.frames import Frames
from phasetune.units import KB_EV_PER_K

TINY = [
    "sampler.equilibration_steps=150",
    "sampler.melt_steps=0",
    "sampler.production_steps=300",
    "sampler.stride=10",
    "sampler.progress=false",
    "threads=1",
    "state_points=[{name: s, phase: fcc, element: Ar, lattice_A: 5.3, n_atoms: 32,"
    " temperature_K: 40, pressure_GPa: 0.0}, {name: l, phase: fcc, element: Ar,"
    " lattice_A: 5.3, n_atoms: 32, temperature_K: 50, pressure_GPa: 0.2}]",
]


def test_sample_writes_frames_summary_and_plot(tmp_path):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="sample", overrides=TINY)
    frames = sample(cfg, tmp_path)
    loaded = Frames.load(tmp_path / "frames.h5")
    assert loaded.equals(frames)
    assert (tmp_path / "traces.png").stat().st_size > 10_000
    with open(tmp_path / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["name"] for r in rows] == ["s", "l"]
    # the summary reports the means of the stored frames
    assert float(rows[1]["T_K"]) == pytest.approx(float(frames.temperature[:, 1].mean()), abs=1e-3)
    n = 32
    for k, row in enumerate(rows):
        frame_u = frames.potential_energy[:, k].numpy() / n
        assert float(row["potential_energy_per_atom_eV"]) == pytest.approx(frame_u.mean(), abs=2e-6)
        assert float(row["P_GPa"]) == pytest.approx(float(frames.pressure[:, k].mean()), abs=2e-5)
    # ... and they are the physics of the state points asked for (a 32-atom LJ fcc crystal,
    # 4.5 ps, 30 frames; measured over 4 seeds: T within 8 %, P within 0.036 GPa, and the
    # ratio below within 0.89-0.96):
    eps, sigma = cfg.model.epsilon_eV, cfg.model.sigma_A
    assert cfg.model.cutoff_sigma == 2.5 and cfg.model.shift
    for k, (t_set, p_set) in enumerate([(40.0, 0.0), (50.0, 0.2)]):
        row = rows[k]
        assert (float(row["T_set_K"]), float(row["P_set_GPa"])) == (t_set, p_set)
        # the thermostat: ⟨T⟩ (= 2⟨KE⟩/3Nk_B) at the set temperature
        assert float(row["T_K"]) == pytest.approx(t_set, rel=0.12), row
        # the barostat: the virial pressure at the set pressure (per frame σ ≈ 0.03 GPa)
        assert float(row["P_GPa"]) == pytest.approx(p_set, abs=0.05), row
        # equipartition in a harmonic crystal: U/N − u_static(a) = (3/2) k_B T (N−1)/N, with
        # u_static the fcc lattice sum of the truncated and shifted LJ at each frame's
        # lattice constant (written out below); ±15 % for anharmonicity and statistics. A
        # missing energy shift (+0.6 ε/atom) or a k_B slip (×2) is far outside.
        a = (frames.volume[:, k].numpy() / (n / 4)) ** (1 / 3)
        u_static = np.array([_fcc_lattice_energy(x, eps, sigma, 2.5 * sigma) for x in a])
        u_thermal = frames.potential_energy[:, k].numpy() / n - u_static
        ratio = u_thermal.mean() / (1.5 * KB_EV_PER_K * t_set * (n - 1) / n)
        assert ratio == pytest.approx(1.0, abs=0.15), (k, ratio)


def _fcc_lattice_energy(a, eps, sigma, r_cut):
    """Static energy per atom (eV) of a perfect fcc crystal of cubic lattice constant a (Å)
    under LJ truncated and shifted at r_cut: ½ Σ_R [φ(R) − φ(r_cut)] over R < r_cut."""
    basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    m = int(np.ceil(r_cut / a)) + 1
    g = np.arange(-m, m + 1)
    cells = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 1, 3)
    r = np.linalg.norm((cells + basis).reshape(-1, 3) * a, axis=1)
    r = r[(r > 0) & (r < r_cut)]

    def phi(x):
        return 4 * eps * ((sigma / x) ** 12 - (sigma / x) ** 6)

    return 0.5 * float(np.sum(phi(r) - phi(r_cut)))


def test_state_point_config_errors_name_the_field():
    with pytest.raises(ValueError, match=r"state_points\[0\] is missing lattice_A"):
        state_points_from_config(
            [{"name": "x", "phase": "fcc", "element": "Ar", "n_atoms": 4, "temperature_K": 10}]
        )
    with pytest.raises(ValueError, match="unknown phase"):
        state_points_from_config(
            [
                {
                    "name": "x",
                    "phase": "bct",
                    "element": "Ar",
                    "lattice_A": 5.3,
                    "n_atoms": 4,
                    "temperature_K": 10,
                }
            ]
        )
