"""The reasonseg_node process: start ROS, run one ReasonSegNode (configured and activated here with `autostart`),
and exit with one line and a code: 0 done or stopped by a signal, 2 bad configuration, 1 a fault."""
from __future__ import annotations

import re
import sys

import rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import TransitionCallbackReturn

from reasonseg.core.errors import ConfigError, ReasonSegError, one_line
from reasonseg.core.signals import ignore_further_signals
from reasonseg.settings.ros_args import check_domain_id, check_ros_args

from .segmentation_node import ReasonSegNode


def _one_line(exc: BaseException) -> str:
    """rcl errors end in ', at /path/file.c:123' breadcrumbs: drop them."""
    return re.sub(r",? at /\S+:\d+", "", one_line(exc, None))[:300]


def main(args: list[str] | None = None) -> int:
    try:
        check_domain_id()
        check_ros_args(sys.argv if args is None else args)
        rclpy.init(args=args)
    except ConfigError as exc:
        print(f"reasonseg_node: {exc}", file=sys.stderr)
        return 2
    except (RCLError, ValueError) as exc:  # bad --ros-args, unreadable or malformed params file
        print(f"reasonseg_node: cannot start: {_one_line(exc)}", file=sys.stderr)
        return 2
    node = None
    code = 0
    try:
        node = ReasonSegNode()
        if node.autostart:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                if rclpy.ok():  # else a signal ended start-up: a clean stop
                    print(f"reasonseg_node: {node.startup_error}", file=sys.stderr)
                    code = 2
                return code
            node.trigger_activate()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ConfigError, ReasonSegError) as exc:
        print(f"reasonseg_node: {exc}", file=sys.stderr)
        code = 2
    except Exception as exc:
        if rclpy.ok():  # a real fault; when the context is gone a signal ended start-up: a clean stop
            print(f"reasonseg_node: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
            code = 1
    finally:
        ignore_further_signals()
        try:
            if node is not None:
                node.destroy_node()
            rclpy.try_shutdown()
        except (KeyboardInterrupt, ExternalShutdownException):  # a second Ctrl-C while stopping
            pass
        ignore_further_signals()  # again: rclpy's shutdown put back the handlers it had replaced
    return code


if __name__ == "__main__":
    sys.exit(main())
