"""ament_python package: the repository root is the package (ARCHITECTURE.md §2)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "audio_interaction_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*", "bench", "tools"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="audio_interaction_ros developers",
    maintainer_email="dev@audio-interaction-ros.invalid",
    description="ROS 2 ears for a robot: the Audio-Interaction streaming audio-language model.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "interaction_node = audio_interaction_ros.ros.interaction_node:main",
            "capture_node = audio_interaction_ros.ros.capture_node:main",
            "player_node = audio_interaction_ros.ros.player_node:main",
            "speech_node = audio_interaction_ros.ros.speech_node:main",
            "fleet_node = audio_interaction_ros.ros.fleet_node:main",
            "audio-interaction-bringup = audio_interaction_ros.ros.bringup:main",
            "audio-interaction-run = audio_interaction_ros.runner:main",
            "audio-interaction-build-toy = audio_interaction_ros.toy.build:main",
        ],
    },
)
