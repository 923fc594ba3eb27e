"""How phasetune's commands talk to the terminal: plain messages, warnings marked.

The run directory's log file keeps time, module and level for every line
(``phasetune/conf/hydra/job_logging/phasetune.yaml``); the terminal gets the message alone,
with ``WARNING:`` / ``ERROR:`` in front where it is one.
"""

from __future__ import annotations

import logging


class ConsoleFormatter(logging.Formatter):
    """``message`` for INFO and below, ``LEVEL: message`` above."""

    def __init__(self) -> None:
        super().__init__("%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{record.levelname}: {text}"
        return text
