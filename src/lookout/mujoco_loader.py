"""Import MuJoCo safely next to Triton.

With `MUJOCO_GL=osmesa`, importing mujoco loads Mesa, which brings its own LLVM; loading Triton's
LLVM after that segfaults the process (seen with mujoco 4.0, Mesa 22, triton 3.8). Loading Triton
first is safe, so every import of mujoco in Lookout goes through `load_mujoco()`.
"""

from __future__ import annotations

import contextlib
import os
import sys


def default_gl_backend() -> str:
    """EGL where a GPU is visible, OSMesa (CPU) otherwise; `MUJOCO_GL` wins when set."""
    if "MUJOCO_GL" in os.environ:
        return os.environ["MUJOCO_GL"]
    return "egl" if os.path.exists("/dev/nvidia0") else "osmesa"


def load_mujoco():
    if "mujoco" not in sys.modules:
        backend = default_gl_backend()
        os.environ["MUJOCO_GL"] = backend
        if backend == "osmesa":
            os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
        with contextlib.suppress(ImportError):
            import triton._C.libtriton  # noqa: F401  (must be loaded before Mesa's LLVM)
    import mujoco

    return mujoco
