"""Lennard-Jones measurements; run each as ``python -m bench.lj.<name>``."""
