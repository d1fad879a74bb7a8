"""Faults the node must ride through: the audio publisher dying and coming back, a GPU that runs
out of memory at configure (clean FAILURE, or CPU fallback when allowed)."""
from __future__ import annotations

from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from .conftest import spin_for, spin_until
from .test_interaction_node import AudioTester, beep_clip, node_and_tester


def test_audio_publisher_dies_and_comes_back(ros_context, toy_model_dir):
    with node_and_tester(ros_context, toy_model_dir) as (node, first, executor):
        first.info(48000, 2)
        spin_for(executor, 0.2)
        first.send(beep_clip()[:48000])  # 1 s, then the driver crashes mid-stream
        executor.remove_node(first.node)
        first.node.destroy_node()
        spin_for(executor, 1.0)
        second = AudioTester(ros_context)  # restarted driver: new publisher, new stamps
        second.stamp_ns += 5 * 10**9
        executor.add_node(second.node)
        try:
            second.info(48000, 2)
            spin_for(executor, 0.2)
            second.send(beep_clip())
            assert spin_until(executor, lambda: second.speech, 20)
            assert second.speech[0] == "I hear a beep."
            assert spin_until(executor, lambda: "input_s.stamp_gap" in second.values(), 5)
        finally:
            second.node.destroy_node()


def test_gpu_out_of_memory_at_configure(ros_context, toy_model_dir, gpu_out_of_memory):
    with node_and_tester(ros_context, toy_model_dir, activate=False, device="cuda",
                         dtype="float32") as (node, _, _):
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert "out of GPU memory" in node._load_error
        node.set_parameters([Parameter("allow_cpu_fallback", value=True)])
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.engine.model.info.device == "cpu"
