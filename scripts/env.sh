# Source this for a shell with the venv, the built ROS workspace and Lookout's defaults:
#   . scripts/env.sh
_lookout_root=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)
. "$_lookout_root/.venv/bin/activate"
export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
if [ -f "$_lookout_root/ros2_ws/install/local_setup.sh" ]; then
  # colcon's scripts read unset variables; relax nounset while sourcing.
  case $- in *u*) set +u; . "$_lookout_root/ros2_ws/install/local_setup.sh"; set -u ;;
             *) . "$_lookout_root/ros2_ws/install/local_setup.sh" ;; esac
fi
export RMW_IMPLEMENTATION=${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
# Camera frames need a larger shared-memory segment than Fast DDS's default (see config/fastdds.xml).
export FASTDDS_DEFAULT_PROFILES_FILE=${FASTDDS_DEFAULT_PROFILES_FILE-$_lookout_root/config/fastdds.xml}
export MUJOCO_GL=${MUJOCO_GL:-osmesa}
export PYOPENGL_PLATFORM=${PYOPENGL_PLATFORM:-osmesa}
# No model hub is reachable: load only local files.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export YOLO_OFFLINE=1 YOLO_VERBOSE=${YOLO_VERBOSE:-False}
export TOKENIZERS_PARALLELISM=false
export LOOKOUT_ROOT="$_lookout_root"
unset _lookout_root
