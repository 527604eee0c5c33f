#!/usr/bin/env bash
# `make setup`: everything a fresh clone needs, idempotent (a second run only checks stamps).
#   1. Debian's libosmesa6 (MuJoCo's CPU renderer) where it is missing
#   2. .venv with the project (editable) and its pinned dependencies (pyproject.toml)
#   3. the ROS wheels' CMake include paths made valid for this machine
#   4. ros2_ws built with colcon
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
PYTHON=${PYTHON:-python3.11}
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf '\033[31mERROR: %s\033[0m\n' "$*" >&2; exit 1; }

# --- 1. system libraries -------------------------------------------------------------------
missing_debs=()
# One read of the linker cache: `ldconfig -p | grep -q` can fail under pipefail when grep exits at its
# first match and ldconfig dies of SIGPIPE, which reported an installed library as missing.
libs=$(ldconfig -p 2>/dev/null || true)
grep -q 'libOSMesa\.so' <<< "$libs" || missing_debs+=(libosmesa6)   # MuJoCo on the CPU
grep -q 'libGL\.so\.1' <<< "$libs" || missing_debs+=(libgl1)        # OpenCV
grep -q 'libglib-2\.0\.so\.0' <<< "$libs" || missing_debs+=(libglib2.0-0)
# LOOKOUT_ASSUME_MISSING_DEBS lets the tests check the non-root message on a machine that has them.
[ -n "${LOOKOUT_ASSUME_MISSING_DEBS:-}" ] && read -r -a missing_debs <<< "$LOOKOUT_ASSUME_MISSING_DEBS"
if [ ${#missing_debs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && [ -z "${LOOKOUT_ASSUME_MISSING_DEBS:-}" ]; then
    say "installing Debian packages: ${missing_debs[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_debs[@]}" >/dev/null
  elif [ -z "${LOOKOUT_ASSUME_MISSING_DEBS:-}" ] && command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    say "installing Debian packages with sudo: ${missing_debs[*]}"
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_debs[@]}" >/dev/null
  else
    die "Debian packages missing: ${missing_debs[*]}. Installing them needs root: run
    sudo apt-get install -y ${missing_debs[*]}
once, then 'make setup' again (everything else installs as your user)."
  fi
else
  say "system libraries present (libosmesa6, libgl1, libglib2.0-0)"
fi

# --- 2. virtual environment ----------------------------------------------------------------
command -v "$PYTHON" >/dev/null || die "$PYTHON not found: Lookout needs Python 3.11 (set PYTHON=... to choose another)"
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
deps_hash=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat "$VENV/.lookout-deps" 2>/dev/null)" != "$deps_hash" ]; then
  say "installing Python dependencies into .venv (first run: several minutes)"
  "$PY" -m pip install -q --upgrade "pip>=24,<26" "setuptools<80" wheel
  # torch first and alone: pip takes the 2.14.1 build from this machine's local wheel store.
  "$PY" -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
  "$PY" -m pip install -q -e ".[dev,ros-wheels]"
  "$PY" -m pip check >/dev/null 2>&1 || "$PY" -m pip check | sed 's/^/   pip check: /' || true
  echo "$deps_hash" > "$VENV/.lookout-deps"
else
  say "Python dependencies up to date"
fi

# --- 3. CMake include paths of the ROS wheels ----------------------------------------------
bash scripts/ros_cmake_paths.sh "$VENV" "$PY"

# --- 4. ROS 2 workspace -------------------------------------------------------------------
ws_hash=$( (find ros2_ws/src -type f -not -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum; echo "$deps_hash") | sha256sum | cut -c1-16)
if [ "$(cat ros2_ws/install/.lookout-ws 2>/dev/null)" != "$ws_hash" ]; then
  say "building ros2_ws with colcon"
  command -v cmake >/dev/null || "$PY" -m pip install -q "cmake<4"
  (
    cd ros2_ws
    export PATH="$VENV/bin:$PATH"
    export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
    export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
    skip=()  # ros2_ws/src/vision_msgs stands in only where no vision_msgs is installed (apt, a sourced ROS)
    if "$PY" -c "import sys, vision_msgs; sys.exit('ros2_ws/install' in vision_msgs.__file__)" >/dev/null 2>&1; then
      skip=(--packages-skip vision_msgs)
    fi
    "$VENV/bin/colcon" build --event-handlers console_cohesion- console_direct- summary+ "${skip[@]}" \
      --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$PY" -DPYTHON_EXECUTABLE="$PY" \
      > "$ROOT/ros2_ws/colcon-build.log" 2>&1 || { tail -40 "$ROOT/ros2_ws/colcon-build.log"; die "colcon build failed (full log: ros2_ws/colcon-build.log)"; }
  )
  echo "$ws_hash" > ros2_ws/install/.lookout-ws
else
  say "ros2_ws up to date"
fi
say "setup done. Run commands in the environment with: scripts/run.sh <command> (or source scripts/env.sh)"
