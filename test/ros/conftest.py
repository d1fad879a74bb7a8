"""ROS test plumbing: an isolated DDS domain per test session, contexts, spinning helpers."""
from __future__ import annotations

import contextlib
import os
import time

import pytest

# Discovery never leaves the machine, and parallel test runs do not see each other.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # Jazzy and later
if os.environ.get("ROS_DISTRO") == "humble":
    os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")
os.environ["ROS_DOMAIN_ID"] = str(os.getpid() % 90 + 10)  # 10..99: valid for DDS port maps

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed (ROS 2 tests)")
pytest.importorskip("audio_common_msgs", reason="audio_common_msgs missing: run "
                    "tools/build_interfaces.sh")


@contextlib.contextmanager
def _initialized_context():
    context = rclpy.context.Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)


@pytest.fixture()
def ros_context():
    with _initialized_context() as context:
        yield context


@pytest.fixture()
def robot(ros_context):
    """A second context (its own DDS participant) for the drivers and consumers: they run in
    other processes on a robot, and FastDDS refuses two types on one topic in one participant."""
    with _initialized_context() as context:
        yield context


def spin_until(executor, predicate, timeout_s: float = 20.0) -> bool:
    """Spin until ``predicate()`` is true; the timeout is only a deadline for waiting."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=0.05)
    return predicate()


def spin_for(executor, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
