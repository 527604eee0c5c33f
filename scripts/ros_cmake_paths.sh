#!/usr/bin/env bash
# Point the ROS wheels' exported CMake targets at this Python's include folders. The wheels name their
# builder's (/opt/python/cp3XX-.../include/python3.XX and numpy's); CMake stops on paths that do not exist.
# Rewriting inside the environment needs no root. Usage: scripts/ros_cmake_paths.sh PREFIX PYTHON
# (PREFIX: the venv the wheels were installed into). Used by scripts/setup.sh and bench/device_ros.sh.
set -euo pipefail
prefix=$1 py=$2
py_inc=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np_inc=$("$py" -c 'import numpy; print(numpy.get_include())')
mapfile -t cmake_files < <(grep -rl --include='*.cmake' '/opt/python/cp3' "$prefix/share" "$prefix/lib" 2>/dev/null || true)
if [ ${#cmake_files[@]} -gt 0 ]; then
  printf '\033[1m==> %s\033[0m\n' "pointing ${#cmake_files[@]} ROS CMake files at this Python's include folders"
  sed -i -E \
    -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_?core/include#${np_inc}#g" \
    -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#${py_inc}#g" \
    "${cmake_files[@]}"
fi
