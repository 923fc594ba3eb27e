"""Titanium measurements with the Mendelev Ti1 EAM; run each as ``python -m bench.ti1.<name>``."""
