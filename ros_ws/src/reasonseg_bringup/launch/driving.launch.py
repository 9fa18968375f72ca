"""ros2 launch reasonseg_bringup driving.launch.py [camera_topic:=...] [params_file:=...] [backend:=...]
                                                  [namespace:=...] [local_shm:=true|false]

Starts the reasonseg segmentation node (a managed node that configures and activates itself unless
`autostart: false` in the params file) on a camera stream, as a LifecycleNode action: launch event handlers can
watch and drive its transitions. Send instructions with:
  ros2 topic pub --once /perception/instruction std_msgs/msg/String "{data: 'the pedestrian about to cross'}"
  ros2 service call /perception/reasonseg/set_instruction reasonseg_interfaces/srv/SetInstruction "{instruction: 'the bus'}"
`local_shm:=true` when the camera driver and the node share this machine: loopback-only DDS with a
shared-memory segment sized for camera frames (default false, so other machines can see the node).
(`reasonseg_launch` starts the same node with the same arguments where `ros2 launch` is not installed.)
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration

from launch import LaunchDescription

try:
    from launch_ros.actions import LifecycleNode as NodeAction
except ImportError:  # a launch_ros without the lifecycle action: a plain Node (the node still starts itself)
    from launch_ros.actions import Node as NodeAction

from reasonseg.segmenters.registry import BACKENDS


def _node(context):
    # An explicit backend:= overrides the params file; empty (default) keeps the file's segmenter.backend.
    backend = LaunchConfiguration("backend").perform(context)
    overrides = [{"segmenter.backend": backend}] if backend else []
    return [NodeAction(
        package="reasonseg_perception",
        executable="reasonseg_node",
        name="reasonseg",
        namespace=LaunchConfiguration("namespace"),  # a LifecycleNode needs it given explicitly
        parameters=[LaunchConfiguration("params_file"), *overrides],
        remappings=[("image", LaunchConfiguration("camera_topic"))],
        output="screen",
        emulate_tty=True,
    )]


def generate_launch_description():
    share = get_package_share_directory("reasonseg_bringup")
    return LaunchDescription([
        DeclareLaunchArgument("camera_topic", default_value="/camera/image_raw",
                              description="sensor_msgs/Image topic to segment"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "driving.yaml"),
                              description="node parameters (YAML)"),
        DeclareLaunchArgument("backend", default_value="", choices=["", *BACKENDS],
                              description="segmenter backend ('' = as in the params file)"),
        DeclareLaunchArgument("namespace", default_value="perception", description="namespace of the node's topics"),
        DeclareLaunchArgument("local_shm", default_value="false", choices=["true", "false"],
                              description="camera and node on this machine: loopback-only DDS + shared memory"),
        # Camera frames exceed UDP fragment sizes: shared memory transport, loopback only (opt-in).
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE",
                               os.path.join(share, "config", "fastdds_localhost_shm.xml"),
                               condition=IfCondition(LaunchConfiguration("local_shm"))),
        SetEnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST",
                               condition=IfCondition(LaunchConfiguration("local_shm"))),
        OpaqueFunction(function=_node),
    ])
