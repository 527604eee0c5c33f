"""Repack a wheel without the members whose path matches a regex (and without their RECORD lines).

Used by the scripts that fill the carried wheel folders for the GPU machine (64 MiB per call):
    python3 bench/wheel_repack.py SRC.whl DST.whl REGEX
"""

import os
import re
import sys
import zipfile


def repack(src: str, dst: str, pattern: str) -> None:
    pat = re.compile(pattern)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst + ".tmp", "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if pat.search(info.filename):
                continue
            data = zin.read(info.filename)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines(True)
                data = "".join(line for line in lines if not pat.search(line.split(",")[0])).encode()
            zout.writestr(info, data)
    os.replace(dst + ".tmp", dst)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    repack(*sys.argv[1:])
