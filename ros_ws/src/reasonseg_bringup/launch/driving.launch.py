"""ros2 launch reasonseg_bringup driving.launch.py [camera_topic:=...] [params_file:=...] [backend:=...] [namespace:=...]

Starts the reasonseg segmentation node on a camera stream. Send instructions with:
  ros2 topic pub --once /perception/instruction std_msgs/msg/String "{data: 'the pedestrian about to cross'}"
(`reasonseg bringup` starts the same node with the same arguments where `ros2 launch` is not installed.)
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("reasonseg_bringup")
    return LaunchDescription([
        DeclareLaunchArgument("camera_topic", default_value="/camera/image_raw",
                              description="sensor_msgs/Image topic to segment"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "driving.yaml"),
                              description="node parameters (YAML)"),
        DeclareLaunchArgument("backend", default_value="onnxruntime",
                              description="segmenter backend: onnxruntime | torch"),
        DeclareLaunchArgument("namespace", default_value="perception", description="namespace of the node's topics"),
        # Camera frames exceed UDP fragment sizes: shared memory transport, loopback only.
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE",
                               os.path.join(share, "config", "fastdds_localhost_shm.xml")),
        Node(
            package="reasonseg_perception",
            executable="reasonseg_node",
            name="reasonseg",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("params_file"), {"segmenter.backend": LaunchConfiguration("backend")}],
            remappings=[("image", LaunchConfiguration("camera_topic"))],
            output="screen",
            emulate_tty=True,
        ),
    ])
