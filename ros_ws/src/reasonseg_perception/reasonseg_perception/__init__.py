"""rclpy adapters over the reasonseg library; all logic lives in `reasonseg`."""
