"""ament_python package of Lookout's ROS 2 nodes. The logic lives in the `lookout` library."""

from setuptools import find_packages, setup

package_name = "lookout_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="Lookout developers",
    maintainer_email="dev@example.com",
    description="ROS 2 nodes of Lookout",
    license="AGPL-3.0-or-later",
    entry_points={
        # Nodes register here as they land (detector_node, agent_node, sim_node).
        "console_scripts": [
            "detector_node = lookout_ros.detector_node:main",
            "sim_node = lookout_ros.sim_node:main",
            "agent_node = lookout_ros.agent_node:main",
        ],
    },
)
