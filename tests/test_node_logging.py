"""Library logs reach the node's ROS logger at every severity (rclpy fixes severity per call site)."""
from __future__ import annotations

import logging

import pytest


def test_python_logging_adapter_passes_every_severity(capfd):
    rclpy = pytest.importorskip("rclpy", reason="ROS 2 rclpy wheels not installed")
    from reasonseg_perception.segmentation_node import _RosLogHandler

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("log_adapter_test", context=context)
    log = logging.getLogger("reasonseg.test_adapter")
    log.propagate = False
    log.setLevel(logging.INFO)
    handler = _RosLogHandler(node.get_logger())
    log.addHandler(handler)
    try:
        sent = []
        for i in range(3):  # interleaved severities, repeatedly, as a library does
            for level in (logging.INFO, logging.WARNING, logging.ERROR, logging.INFO):
                text = f"adapter-msg-{i}-{logging.getLevelName(level)}"
                log.log(level, text)
                sent.append((level, text))
    finally:
        log.removeHandler(handler)
        node.destroy_node()
        rclpy.shutdown(context=context)
    err = capfd.readouterr().err
    for level, text in sent:
        line = next((ln for ln in err.splitlines() if text in ln), None)
        assert line is not None, f"{text} never reached the ROS log:\n{err[-2000:]}"
        assert f"[{logging.getLevelName(level).replace('WARNING', 'WARN')}]" in line
