"""Entry point of `reasonseg_node`: a SIGINT or SIGTERM while the node's heavy modules are still importing
(rclpy, OpenCV, torch: seconds on a cold start) is a clean stop with exit 0, not a KeyboardInterrupt traceback
or a kill by the default SIGTERM action. rclpy.init installs rclpy's own handlers afterwards; an interrupt
that still lands while start-up is handling an error (a fresh-clone run caught one inside `rclpy.ok()`) is
a clean stop too."""
from __future__ import annotations

import signal


def main(argv: list[str] | None = None) -> int | None:
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM raises KeyboardInterrupt, as SIGINT does
    try:
        from .segmentation_node import main as node_main

        return node_main(argv)
    except KeyboardInterrupt:  # also one landing inside the node's own error handling while it starts
        return 0
