"""reasonseg_replay: publish a rosbag2 (MCAP or sqlite3) at its recorded rate, as raw CDR.

Topics with std_msgs/String are published reliable + transient-local (instructions);
everything else with sensor-data QoS, as a camera driver does.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.serialization import deserialize_message
from rclpy.signals import SignalHandlerOptions
from rclpy.utilities import remove_ros_args
from rosbags.rosbag2 import Reader, ReaderError

from reasonseg.cli.args import number
from reasonseg.core.errors import ConfigError, one_line
from reasonseg.settings.ros_args import check_domain_id


def get_message(msgtype: str) -> type:
    """'sensor_msgs/msg/Image' -> the generated Python class (rosidl_runtime_py is not on PyPI)."""
    try:
        pkg, kind, name = msgtype.split("/")
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ValueError, ImportError, AttributeError):
        raise ReaderError(f"message type {msgtype!r} is not installed here") from None


HAS_HEADER = {"sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/CameraInfo"}
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def replay(node: Node, bag: Path, *, rate: float, wait_subscribers: int, wait_timeout_s: float,
           restamp: bool = False) -> int:
    with Reader(bag) as reader:
        pubs = {}
        for conn in reader.connections:
            qos = LATCHED if conn.msgtype == "std_msgs/msg/String" else qos_profile_sensor_data
            pubs[conn.topic] = node.create_publisher(get_message(conn.msgtype), conn.topic, qos)
        deadline = time.monotonic() + wait_timeout_s
        while wait_subscribers and time.monotonic() < deadline:
            if all(p.get_subscription_count() >= wait_subscribers for p in pubs.values()):
                break
            rclpy.spin_once(node, timeout_sec=0.1)
        else:
            if wait_subscribers:
                node.get_logger().warning(f"starting without {wait_subscribers} subscriber(s) on every topic")
        node.get_logger().info(f"replaying {bag} ({reader.message_count} messages, {reader.duration / 1e9:.1f} s) "
                               f"at {rate}x")
        start_wall, start_bag, sent = time.monotonic(), None, 0
        for conn, t_ns, raw in reader.messages():
            start_bag = t_ns if start_bag is None else start_bag
            delay = (t_ns - start_bag) / 1e9 / rate - (time.monotonic() - start_wall)
            if delay > 0:
                time.sleep(delay)
            if restamp and conn.msgtype in HAS_HEADER:  # live-like stamps, so latency = now - stamp holds
                msg = deserialize_message(bytes(raw), get_message(conn.msgtype))
                msg.header.stamp = node.get_clock().now().to_msg()
                pubs[conn.topic].publish(msg)
            else:
                pubs[conn.topic].publish(bytes(raw))  # serialized CDR straight from the bag
            sent += 1
        node.get_logger().info(f"replay done: {sent} messages")
    return sent


def main(argv: list[str] | None = None) -> int:
    argv = remove_ros_args(sys.argv if argv is None else argv)[1:]
    p = argparse.ArgumentParser(prog="reasonseg_replay")
    p.add_argument("bag", type=Path)
    p.add_argument("--rate", type=number(above=True), default=1.0, help="speed-up over recorded time")
    p.add_argument("--wait-subscribers", type=number(int), default=1,
                   help="wait for this many subscribers on each topic")
    p.add_argument("--wait-timeout", type=number(), default=60.0, help="seconds")
    p.add_argument("--restamp", action="store_true", help="set header stamps to the time of publishing")
    args = p.parse_args(argv)
    if not args.bag.exists():
        print(f"reasonseg_replay: bag not found: {args.bag}", file=sys.stderr)
        return 2
    try:
        check_domain_id()
    except ConfigError as exc:
        print(f"reasonseg_replay: {exc}", file=sys.stderr)
        return 2
    # Python's own SIGINT handling (KeyboardInterrupt, caught below): rclpy's would shut the context down
    # under a running publish or node creation, and raise a second KeyboardInterrupt in clean-up.
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node, code = None, 0
    try:
        node = Node("reasonseg_replay")
        replay(node, args.bag, rate=args.rate, wait_subscribers=args.wait_subscribers, wait_timeout_s=args.wait_timeout,
               restamp=args.restamp)
        time.sleep(0.5)  # let the last samples leave before the publishers go
    except KeyboardInterrupt:
        pass
    except ReaderError as exc:  # damaged metadata or storage file, a type not installed: one line
        print(f"reasonseg_replay: cannot replay {args.bag}: {one_line(exc, 300)}", file=sys.stderr)
        code = 2
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
