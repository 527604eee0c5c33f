"""Lookout: open-vocabulary perception and a language agent for ROS 2, plus a fast QLoRA trainer.

The library is ROS-free: `lookout.perception`, `lookout.agent`, `lookout.train` and `lookout.sim`
run in plain Python; the ROS 2 packages in `ros2_ws/src` are thin adapters over them.
"""

__version__ = "0.1.0"
