#!/usr/bin/env bash
# Docker entrypoint: source ROS and the Lookout workspace, then run the command.
set -e
. /opt/ros/kilted/setup.bash
. /opt/lookout/ros2_ws/install/local_setup.bash
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-0}
exec "$@"
