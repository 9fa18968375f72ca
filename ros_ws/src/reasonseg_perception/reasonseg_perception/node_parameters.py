"""The node's parameters: one read-only ROS parameter per setting (documented from the settings schema), read back
into Settings at configure."""
from __future__ import annotations

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.node import Node

from reasonseg.core.errors import ConfigError, one_line
from reasonseg.core.settings import Settings, field_docs
from reasonseg.settings.ros_args import check_url_parameters, unknown_parameter_warnings
from reasonseg.settings.validation import settings_from_flat


def _overrides(node: Node) -> dict:
    """rclpy keeps the names given by YAML / -p in _parameter_overrides (no public accessor)."""
    return getattr(node, "_parameter_overrides", {})


def declare_settings(node: Node) -> None:
    """Every setting as a parameter; raises ConfigError, one line, for a value of the wrong type."""
    # Before any is declared: a declared value is readable over DDS (get_parameters, /parameter_events)
    check_url_parameters({name: p.value for name, p in _overrides(node).items()})
    docs = field_docs()
    for name, default in Settings().flat().items():
        try:
            node.declare_parameter(name, default, ParameterDescriptor(description=docs.get(name, ""), read_only=True))
        except ParameterException as exc:  # e.g. a string given for an integer parameter
            raise ConfigError(f"parameter {name}: {one_line(exc)}") from None


def checked_autostart(node: Node) -> bool:
    value = node.get_parameter("autostart").value
    return settings_from_flat({"autostart": value}).autostart


def read_settings(node: Node) -> Settings:
    """The settings the parameters hold (validated); a warning per given name that is no setting."""
    values = {name: node.get_parameter(name).value for name in Settings().flat()}
    settings = settings_from_flat(values)
    for line in unknown_parameter_warnings(_overrides(node), values):
        node.get_logger().warning(line)
    return settings
