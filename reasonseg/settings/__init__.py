"""Settings: sections (dataclasses), YAML / ROS-parameter loading, the parameter schema."""
