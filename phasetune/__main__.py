"""``python -m phasetune`` is the ``phasetune`` command."""

from phasetune.commands import train_main

train_main()
