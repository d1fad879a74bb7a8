"""Faults the node must ride through: the audio publisher dying and coming back, a GPU that runs
out of memory at configure (clean FAILURE, or CPU fallback when allowed)."""
from __future__ import annotations

import torch
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn

from .conftest import spin_for, spin_until
from .test_interaction_node import AudioTester, beep_clip, make_node


def test_audio_publisher_dies_and_comes_back(ros_context, fixture_dir):
    node = make_node(ros_context, fixture_dir)
    first = AudioTester(ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(first.node)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        first.info(48000, 2)
        spin_for(executor, 0.2)
        first.send(beep_clip()[:48000])  # 1 s, then the driver crashes mid-stream
        executor.remove_node(first.node)
        first.node.destroy_node()
        spin_for(executor, 1.0)
        second = AudioTester(ros_context)  # restarted driver: new publisher, new stamps
        second.stamp_ns += 5 * 10**9
        executor.add_node(second.node)
        second.info(48000, 2)
        spin_for(executor, 0.2)
        second.send(beep_clip())
        assert spin_until(executor, lambda: second.speech, 20)
        assert second.speech[0] == "I hear a beep."
        assert spin_until(executor, lambda: "input_s.stamp_gap" in second.values(), 5)
        second.node.destroy_node()
    finally:
        node.on_shutdown(None)
        node.destroy_node()


def _gpu_that_runs_out_of_memory(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    original = torch.nn.Module.to

    def to(self, *args, **kwargs):
        if any(str(a).startswith("cuda") for a in args):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 6.00 GiB")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", to)


def test_gpu_out_of_memory_at_configure(ros_context, fixture_dir, monkeypatch):
    _gpu_that_runs_out_of_memory(monkeypatch)
    node = make_node(ros_context, fixture_dir, device="cuda", dtype="float32")
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert "out of GPU memory" in node._load_error
        from rclpy.parameter import Parameter

        node.set_parameters([Parameter("allow_cpu_fallback", value=True)])
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.engine.model.info.device == "cpu"
    finally:
        node.on_shutdown(None)
        node.destroy_node()
