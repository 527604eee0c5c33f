#!/usr/bin/env bash
# Fill .whl/ with the wheels the GPU machine lacks, for bench/train.py and the 1B-width parity run.
# Run here (a machine with PyPI access, not the GPU machine), from the repository root:
#   bash bench/anchor_wheels.sh [DEST]          # DEST defaults to .whl (git-ignored: carry it)
# Then on the device: pip install --no-index --no-deps --target /tmp/site .whl/*.whl; PYTHONPATH=/tmp/site ...
# Adapted from /work/shared/anchors/anchor_wheels.sh (the HF-vs-Unsloth anchor measurement): same pins,
# plus pydantic (lookout.train.config) and typing_extensions. About 17 MiB after repacking, under the
# 64 MiB `carry` limit: unsloth loses studio/ (82 MB of web UI) and bitsandbytes keeps only its
# CUDA 13.x and CPU libraries (the device's torch is 2.11.0+cu130). RECORD lines of dropped files go too.
set -euo pipefail
DEST=${1:-.whl}
mkdir -p "$DEST"
RAW=$(mktemp -d)
trap 'rm -rf "$RAW"' EXIT
PLAT="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
# shellcheck disable=SC2086
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLAT -d "$RAW" \
  bitsandbytes==0.50.2 unsloth==2026.10.9 unsloth_zoo==2026.10.9 \
  trl==1.15.0 datasets==4.8.5 dill==0.4.1 multiprocess==0.70.19 fsspec==2026.2.0 \
  msgspec==0.22.0 nest_asyncio==1.6.0 cut_cross_entropy==25.1.1 \
  pydantic==2.14.3 pydantic_core==2.50.4 annotated_types==0.8.0 typing_inspection==0.4.5 typing_extensions==4.16.0

repack() { python3 "$(dirname "$0")/wheel_repack.py" "$@"; }  # SRC DST REGEX
for w in "$RAW"/*.whl; do
  b=$(basename "$w")
  case "$b" in
    unsloth-*) repack "$w" "$DEST/$b" '^studio/' ;;
    bitsandbytes-*) repack "$w" "$DEST/$b" '^bitsandbytes/libbitsandbytes_(cuda1[12]|rocm|xpu)' ;;
    *) cp "$w" "$DEST/$b" ;;
  esac
done
ls -la "$DEST"; du -sh "$DEST"
