#!/usr/bin/env bash
# On the GPU machine (Python 3.12, no ROS, no network): a venv over the system packages (torch stays the
# image's), the wheels carried in .whl-ros (bench/ros_wheels.sh), and ros2_ws's lookout_interfaces and
# lookout_ros built with colcon, as scripts/setup.sh does here. Then, in the same shell:
#   . /tmp/rosvenv/env.sh && python bench/perception.py --device cuda ...
set -euo pipefail
V=${1:-/tmp/rosvenv}
python3 -m venv --without-pip --system-site-packages "$V"
# The image's python3 may itself be a venv, whose packages --system-site-packages does not reach: add them.
python3 -c 'import site; print("\n".join(site.getsitepackages()))' > "$("$V/bin/python" -c 'import site; print(site.getsitepackages()[0])')/zz_image.pth"
"$V/bin/python" -m pip install -q --no-index --no-deps --no-compile .whl-ros/*.whl
(cd "$V/lib" && for l in libfastdds.so libfastdds.so.3.2; do [ -e $l ] || ln -s libfastdds.so.3.2.* $l; done)
bash scripts/ros_cmake_paths.sh "$V" "$V/bin/python"
rm -rf ros2_ws/build ros2_ws/install ros2_ws/log
(
  cd ros2_ws
  export PATH="$V/bin:$PATH" AMENT_PREFIX_PATH="$V" CMAKE_PREFIX_PATH="$V"
  "$V/bin/colcon" build --packages-select lookout_interfaces lookout_ros --event-handlers console_cohesion- \
    console_direct- summary+ --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$V/bin/python" \
    > colcon-build.log 2>&1 || { tail -40 colcon-build.log; exit 1; }
)
cat > "$V/env.sh" <<ENV
. "$V/bin/activate"
export AMENT_PREFIX_PATH="$V" RMW_IMPLEMENTATION=rmw_fastrtps_cpp FASTDDS_DEFAULT_PROFILES_FILE="$PWD/config/fastdds.xml" HF_HUB_OFFLINE=1 YOLO_OFFLINE=1 YOLO_VERBOSE=False
set +u; . "$PWD/ros2_ws/install/local_setup.sh"; set -u
export PYTHONPATH="$PWD/src:$PWD/kernels\${PYTHONPATH:+:\$PYTHONPATH}"
ENV
echo "ros2_ws built for $("$V/bin/python" -V); source $V/env.sh"
