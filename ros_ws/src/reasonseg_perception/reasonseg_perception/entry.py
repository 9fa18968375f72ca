"""Console entry points of the ROS commands, through reasonseg.core.signals.run_command: a SIGINT or SIGTERM at any
moment, imports included, is a clean stop."""
from __future__ import annotations

from importlib import import_module

from reasonseg.core.signals import run_command


def _run(module: str, interrupted_code: int) -> int | None:
    return run_command(lambda: import_module(f"reasonseg_perception.{module}").main, interrupted_code)


def node() -> int | None:
    return _run("node_main", 0)  # ROS convention: a node stopped by a signal exits 0


def launch() -> int | None:
    return _run("launch_runner", 0)


def replay() -> int | None:
    return _run("replay", 0)


def demo() -> int | None:
    return _run("demo", 130)


def sample_drive() -> int | None:
    return _run("sample_drive", 130)
