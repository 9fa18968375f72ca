"""The node's QoS: a default profile per kind of entity, with ROS's standard
`qos_overrides.<topic>.<kind>.<policy>` parameters on top."""
from __future__ import annotations

import copy
from typing import Any, Callable

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions

INSTRUCTION_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
OUTPUT_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
# Sensor data, depth 1: a frame that waits behind a newer one is worthless (DESIGN §6).
IMAGE_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)
# Services keep every request until it is answered: the default depth of 10 silently drops calls beyond it when
# many arrive at once (30 concurrent set_instruction calls got 10-14 answers). Each call is answered in microseconds.
SERVICE_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)

# make(profile, options) creates the entity; options None: no qos_overrides parameters to declare
MakeEntity = Callable[[QoSProfile, "QoSOverridingOptions | None"], Any]


class EffectiveQos:
    """The profile each entity got after its qos_overrides, by (kind, resolved topic). The override parameters
    are declared once, so an entity made again after deactivate/cleanup reuses the effective profile."""

    def __init__(self) -> None:
        self._profiles: dict[tuple[str, str], QoSProfile] = {}

    def create(self, kind: str, resolved_topic: str, default: QoSProfile, make: MakeEntity) -> Any:
        key = (kind, resolved_topic)
        if key in self._profiles:
            return make(self._profiles[key], None)
        # a copy: rclpy writes the overridden policies into the profile it is given
        entity = make(copy.copy(default), QoSOverridingOptions.with_default_policies())
        self._profiles[key] = entity.qos_profile
        return entity
