"""Lookout's ROS 2 nodes: parameters, topics and message conversions over the `lookout` library."""
