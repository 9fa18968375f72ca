"""The `reasonseg` console entry point: the command's modules import while a stop signal is only noted
(reasonseg.core.signals), so a Ctrl-C at any moment is a clean stop."""
from __future__ import annotations

from reasonseg.core.signals import run_command


def cli() -> int | None:
    def load():  # noqa: ANN202 - the command's main, imported under run_command's handlers
        from reasonseg.cli.main import main

        return main
    return run_command(load)
