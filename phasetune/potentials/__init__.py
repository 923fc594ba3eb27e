"""Interatomic potentials as torch-sim models: Lennard-Jones, EAM, MACE, ideal gas."""

from phasetune.third_party import quiet_warp_init

quiet_warp_init()  # before torch-sim initialises Warp (see phasetune.third_party)
