"""Console entry points: a SIGINT or SIGTERM at any moment is a clean stop, for every command.

While the command's module imports (rclpy, OpenCV, torch: seconds on a cold start) a signal is only noted,
and the command then exits without starting: a KeyboardInterrupt landing inside an import surfaces as a
traceback, sometimes wrapped in another error (class creation wraps it in a RuntimeError). Afterwards SIGTERM
(docker stop, systemd) raises KeyboardInterrupt as SIGINT does, so every command stops by the one path it
has for Ctrl-C, never by the default action's silent kill. The node's rclpy.init installs rclpy's handlers."""
from __future__ import annotations

import signal
from importlib import import_module

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _run(module: str, interrupted_code: int) -> int | None:
    noted: list[int] = []
    keep = {sig: signal.getsignal(sig) == signal.SIG_IGN for sig in _SIGNALS}  # e.g. SIGINT in a `cmd &` job
    for sig in _SIGNALS:
        if not keep[sig]:
            signal.signal(sig, lambda signum, _frame: noted.append(signum))
    command = import_module(f"reasonseg_perception.{module}")
    if noted:
        return interrupted_code
    for sig in _SIGNALS:
        if not keep[sig]:
            signal.signal(sig, signal.default_int_handler)
    try:
        return command.main()
    except KeyboardInterrupt:  # also one landing inside a command's own clean-up or error handling
        return interrupted_code


def ignore_further_signals() -> None:
    """For a process that is already stopping: a second SIGINT/SIGTERM (Ctrl-C reaches the whole process
    group, and a launcher or the demo passes it on too) must not cut the clean-up short. Python resets its
    handlers to the default action at interpreter exit, so one landing there killed the node mid-teardown
    (exit -2, or std::terminate in DDS); SIG_IGN is kept through exit. Call again after rclpy's shutdown,
    which puts back the handlers it had replaced."""
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def node() -> int | None:
    return _run("segmentation_node", 0)  # ROS convention: a node stopped by a signal exits 0


def launch() -> int | None:
    return _run("launch_runner", 0)


def replay() -> int | None:
    return _run("replay", 0)


def demo() -> int | None:
    return _run("demo", 130)


def sample_drive() -> int | None:
    return _run("sample_drive", 130)
