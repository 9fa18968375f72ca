"""Library logs reach the node's ROS logger at every severity (rclpy fixes severity per call site)."""
from __future__ import annotations

import logging

import pytest


def test_python_logging_adapter_passes_every_severity(capfd):
    rclpy = pytest.importorskip("rclpy", reason="ROS 2 rclpy wheels not installed")
    from reasonseg_perception.log_routing import _RosLogHandler

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


def test_several_nodes_in_one_process_take_options_as_arguments():
    """The node class is built from arguments (name, namespace, parameter overrides, context), so several live in
    one process; a bad parameter fails that node's configure transition with one line, not the process."""
    rclpy = pytest.importorskip("rclpy", reason="ROS 2 rclpy wheels not installed")
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from reasonseg_perception.log_routing import _RosLogHandler
    from reasonseg_perception.segmentation_node import ReasonSegNode

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        front = ReasonSegNode("seg_front", namespace="/car", context=context,
                              parameter_overrides=[Parameter("autostart", value=False),
                                                   Parameter("segmenter.num_points", value=-1)])
        rear = ReasonSegNode("seg_rear", namespace="/car", context=context,
                             parameter_overrides=[Parameter("autostart", value=False),
                                                  Parameter("cameras", value=["rear_left", "rear_left"])])
        assert not front.autostart and front.get_fully_qualified_name() == "/car/seg_front"
        assert front.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert "segmenter.num_points=-1 below minimum" in front.startup_error
        assert rear.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert "camera names must be unique" in rear.startup_error
        handlers = [h for h in logging.getLogger("reasonseg").handlers if isinstance(h, _RosLogHandler)]
        assert len(handlers) == 1, "each node added its own log handler: library lines would repeat"
        front.destroy_node()
        rear.destroy_node()
    finally:
        rclpy.shutdown(context=context)
