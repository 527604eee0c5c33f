# Lookout on the official ROS 2 image, with CUDA-capable PyTorch.
#   docker build -t lookout .
#   docker run --gpus all --net=host --ipc=host -it lookout ros2 launch launch/stack.launch.py
# (--ipc=host, or --shm-size=256m: camera frames go through Fast DDS shared memory, see config/fastdds.xml)
# ROS comes from apt here (launch, vision_msgs, cv_bridge are not on PyPI); the Python
# dependencies come from the same pyproject.toml as `make setup`'s venv, so the two cannot drift.
FROM ros:kilted-ros-base

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    MUJOCO_GL=egl \
    FASTDDS_DEFAULT_PROFILES_FILE=/opt/lookout/config/fastdds.xml \
    LOOKOUT_ROOT=/opt/lookout

RUN apt-get update && apt-get install -y --no-install-recommends \
        python3-pip python3-venv python3-colcon-common-extensions \
        ros-kilted-vision-msgs ros-kilted-cv-bridge ros-kilted-launch-ros ros-kilted-ros2launch \
        ros-kilted-rmw-fastrtps-cpp ros-kilted-nav-msgs ros-kilted-diagnostic-msgs \
        libosmesa6 libegl1 libgl1 libglib2.0-0 git \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/lookout
# Dependencies first (cached layer): the pinned list in pyproject.toml, without the ROS wheels
# (apt's ROS is used here). torch==2.14.1 from PyPI is the CUDA build.
COPY pyproject.toml README.md ./
COPY src/lookout/__init__.py src/lookout/__init__.py
COPY kernels/lookout_kernels/__init__.py kernels/lookout_kernels/__init__.py
RUN python3 -m pip install -e ".[dev]"

COPY . .
RUN python3 -m pip install --no-deps -e . \
    && . /opt/ros/kilted/setup.sh \
    && cd ros2_ws && colcon build --packages-skip vision_msgs --cmake-args -DBUILD_TESTING=OFF

COPY scripts/docker-entrypoint.sh /entrypoint.sh
ENTRYPOINT ["/entrypoint.sh"]
CMD ["bash"]
