"""ReasonSeg: language-guided segmentation for robots (core library, no ROS imports)."""

__version__ = "0.1.0"
