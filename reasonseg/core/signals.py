"""Signals for every console entry point: a SIGINT, SIGTERM or SIGHUP at any moment is a clean stop, for every command.

While a command's modules import (torch, OpenCV, rclpy, Lightning: seconds on a cold start) a signal is only
noted, and the command then exits without starting: a KeyboardInterrupt landing inside an import surfaces
as a traceback, sometimes wrapped in another error (class creation wraps it in a RuntimeError), or leaves an
extension half-initialised so that the interpreter's exit aborts. The same holds for the imports a running
command does lazily, and for finalizers (`__del__`, where an exception is dropped): a stop that lands inside one
is raised 50 ms after, re-checked until it is done; a command that ends after a stop it never saw exits 130.
Afterwards SIGTERM (docker stop, systemd) and SIGHUP (a closed terminal) raise KeyboardInterrupt as SIGINT
does, so every command stops by the one path it has for Ctrl-C, never by the default action's silent kill. (A ROS
node's rclpy.init then installs rclpy's handlers for SIGINT and SIGTERM.)"""
from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

# SIGHUP too: a closed terminal must stop a launcher's node, which runs in its own process group
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
INTERRUPTED = 130  # shell convention: 128 + SIGINT
RETRY_S = 0.05     # a stop that lands inside an import is raised this long after, once the import is done


_received: list[int] = []  # stop signals this process got through our handlers
_retry_pipe: list[int] = []  # write end of the running command's retrier (see _Retrier)


def stop_requested() -> bool:
    """A stop signal has arrived. C code a KeyboardInterrupt lands in may turn it into an error of its own
    (onnxruntime's first import reports "initialization failed"): an error handler asks this first, so the
    command reports a stop, not a broken model file."""
    return bool(_received)


def _note(signum: int, _frame: object) -> None:
    _received.append(signum)


def _importing(frame) -> bool:  # noqa: ANN001 - a frame or None
    """The signal landed where a KeyboardInterrupt would do harm or be lost: inside an import, or inside a
    finalizer (`__del__`: Python prints "Exception ignored" and drops the exception, and the command ran on)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib") or frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _ask_again() -> None:
    """Wake the retrier (one byte down its pipe: no lock a handler could deadlock on)."""
    try:
        os.write(_retry_pipe[0], b"!")
    except (IndexError, OSError):  # no command running, or a byte is already waiting
        pass


def _interrupt(signum: int, frame: object) -> None:
    _received.append(signum)
    if _importing(frame):
        # A command imports torch etc. lazily, once running: a KeyboardInterrupt inside an extension module's
        # import leaves it half-initialised, and the interpreter's exit then aborts (-6). Ask again shortly.
        _ask_again()
        return
    raise KeyboardInterrupt


def _retry(_signum: int, frame: object) -> None:
    if _importing(frame):
        _ask_again()
        return
    raise KeyboardInterrupt


class _Retrier:
    """Raises a deferred stop RETRY_S later by sending SIGALRM to the main thread itself. A process-wide timer
    (setitimer) would not do: the kernel may hand its SIGALRM to any thread (torch, DDS and ONNX Runtime start
    many), and then a main thread blocked in sleep, a lock or select is not woken until that call returns."""

    def __init__(self) -> None:
        self._read, write = os.pipe()
        os.set_blocking(write, False)
        _retry_pipe[:] = [write]
        self._done = False
        self._main = threading.main_thread().ident
        self._thread = threading.Thread(target=self._run, name="stop-retrier", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while os.read(self._read, 1):
            time.sleep(RETRY_S)
            if not self._done:
                signal.pthread_kill(self._main, signal.SIGALRM)
        os.close(self._read)

    def close(self) -> None:
        signal.signal(signal.SIGALRM, signal.SIG_IGN)  # one sent just before _done was set must not land anywhere
        self._done = True
        os.close(_retry_pipe.pop())  # the retrier reads end-of-file and ends
        self._thread.join(timeout=1.0)


def run_command(load: Callable[[], Callable[[], int | None]], interrupted_code: int = INTERRUPTED) -> int | None:
    """`load()` does the imports and returns the command's main; run it with clean stops (see module doc)."""
    keep = {sig: signal.getsignal(sig) == signal.SIG_IGN for sig in _SIGNALS}  # e.g. SIGINT in a `cmd &` job
    for sig in _SIGNALS:
        if not keep[sig]:
            signal.signal(sig, _note)
    main = load()
    if _received:
        return interrupted_code
    for sig in _SIGNALS:
        if not keep[sig]:
            signal.signal(sig, _interrupt)
    signal.signal(signal.SIGALRM, _retry)
    retrier = _Retrier()
    try:
        code = main()
    except KeyboardInterrupt:  # also one landing inside a command's own clean-up or error handling
        return interrupted_code
    except Exception:
        if _received:  # C code the KeyboardInterrupt landed in made an error of its own of it (pybind11 in rclpy's
            return interrupted_code  # take_message: "Unable to convert call argument"): still the stop, no traceback
        raise
    else:  # a stop some C code or finalizer swallowed is still a stop
        return interrupted_code if _received else code
    finally:
        retrier.close()
        if _received:  # stopping: a second signal during the interpreter's teardown must not turn 130 into -15
            ignore_further_signals()


def ignore_further_signals() -> None:
    """For a process that is already stopping: a second signal (Ctrl-C reaches a whole process group,
    and `ros2 launch` passes it on too) must not cut the clean-up short. Python resets its handlers to the
    default action at interpreter exit, so one landing there killed the node mid-teardown (exit -2, or
    std::terminate in DDS); SIG_IGN is kept through exit. Call again after rclpy's shutdown, which puts back
    the handlers it had replaced."""
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_IGN)

