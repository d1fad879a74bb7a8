"""The installed executables talk ROS like the tests in test/ros.

The same DDS isolation (a private domain, this machine only) and the same fixtures.
"""
from ..ros.conftest import ros_context  # noqa: F401  (a fixture, with the isolation on import)
from ..ros.test_audio_sources import alsa_home  # noqa: F401  (a fixture)
