"""Batched NPT sampling on torch-sim: state points, integrators, frames, phase checks."""

from phasetune.third_party import quiet_warp_init

quiet_warp_init()  # before torch-sim initialises Warp (see phasetune.third_party)
