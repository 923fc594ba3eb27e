"""Benchmarks and measurements of phasetune; run each as ``python -m bench.<name>``
from the repository root (the figures and their commands: bench/RESULTS.md)."""
