"""Library logs (reasonseg.*) into the node's ROS logger: one handler per process, one ROS line per record."""
from __future__ import annotations

import logging
from typing import Any


class _RosLogHandler(logging.Handler):
    """Library logs (reasonseg.*) go to a ROS logger, one line each.

    rclpy fixes a log call site's severity on first use and raises if a later call from the same
    site has another ("Logger severity cannot be changed between calls"), so each severity has its
    own call below. A log sink must never raise into the code that logs.
    """

    def __init__(self, logger: Any) -> None:
        super().__init__()
        self._log = logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            if record.levelno >= logging.ERROR:
                self._log.error(msg)
            elif record.levelno >= logging.WARNING:
                self._log.warning(msg)
            elif record.levelno >= logging.INFO:
                self._log.info(msg)
            else:
                self._log.debug(msg)
        except Exception:  # e.g. the logger torn down at shutdown
            pass


def route_library_logs(logger: Any) -> None:
    """Once per process: reasonseg's Python logs to `logger` (several nodes must not duplicate lines)."""
    lib = logging.getLogger("reasonseg")
    if not any(isinstance(h, _RosLogHandler) for h in lib.handlers):
        lib.addHandler(_RosLogHandler(logger))
        lib.setLevel(logging.INFO)
