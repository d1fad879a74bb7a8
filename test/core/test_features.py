"""The mel front end: reference mode equals transformers' Whisper extractor, streaming is causal."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from audio_interaction_ros.core.audio import pad_to_chunks, read_audio_file
from audio_interaction_ros.core.features import (LogMel, StreamingFrontEnd, reference_features,
                                                 whisper_extractor)
from audio_interaction_ros.core.protocol import CHUNK_SAMPLES, MEL_FRAMES_PER_CHUNK


@pytest.fixture(scope="module")
def speech(speech_wav) -> np.ndarray:
    return pad_to_chunks(read_audio_file(speech_wav), CHUNK_SAMPLES)


def test_reference_equals_whisper_feature_extractor(speech):
    ours = reference_features(speech).numpy()
    theirs = whisper_extractor()(speech, sampling_rate=16000, padding="longest", truncation=False,
                                 return_tensors="np")["input_features"][0]
    assert ours.shape == theirs.shape == (128, len(speech) // 160)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_streaming_interior_frames_equal_whole_input_mel(speech):
    """With left context, only the last frame of each chunk (no future samples) differs."""
    whole = LogMel().log10_mel(speech)
    front = StreamingFrontEnd(floor_window_s=3600)
    peak = float(whole.max())
    compared = 0
    for k, chunk in enumerate(speech.reshape(-1, CHUNK_SAMPLES)):
        got = front.push(chunk)
        want = (torch.clamp(whole[:, k * 40:(k + 1) * 40], min=peak - 8) + 4) / 4
        # values above both floors must agree (the running and the global max differ)
        got_i, want_i = got[:, :-1], want[:, :-1]
        mask = (got_i > got_i.min() + 1e-3) & (want_i > want_i.min() + 1e-3)
        compared += int(mask.sum())
        np.testing.assert_allclose(got_i[mask], want_i[mask], atol=1e-4)
    assert compared > 0.3 * whole.numel()


def test_streaming_first_chunk_equals_reference_start(speech):
    """At a stream start there is no left context, exactly like the start of a file."""
    first = StreamingFrontEnd().push(speech[:CHUNK_SAMPLES])
    reference = reference_features(speech[:CHUNK_SAMPLES])
    np.testing.assert_allclose(first.numpy(), reference.numpy(), atol=1e-6)


def test_streaming_reset_equals_fresh(speech):
    front = StreamingFrontEnd()
    for chunk in speech.reshape(-1, CHUNK_SAMPLES)[:5]:
        front.push(chunk)
    front.reset()
    again = [front.push(c) for c in speech.reshape(-1, CHUNK_SAMPLES)[:3]]
    fresh = StreamingFrontEnd()
    for a, chunk in zip(again, speech.reshape(-1, CHUNK_SAMPLES)[:3]):
        torch.testing.assert_close(a, fresh.push(chunk))


def test_floor_follows_a_bounded_window():
    """A loud bang stops deciding the floor once it has left the window."""
    rng = np.random.default_rng(1)
    quiet = (1e-5 * rng.standard_normal(CHUNK_SAMPLES)).astype(np.float32)
    bang = (0.9 * rng.standard_normal(CHUNK_SAMPLES)).astype(np.float32)
    front = StreamingFrontEnd(floor_window_s=0.8)  # two chunks
    alone = StreamingFrontEnd(floor_window_s=0.8).push(quiet)
    front.push(bang)
    assert float(front.push(quiet).min()) > float(alone.min()) + 0.1  # floored by the bang
    front.push(quiet)
    settled = front.push(quiet)
    assert float(settled.min()) == pytest.approx(float(alone.min()), abs=0.05)


def test_streaming_shape_and_wrong_chunk():
    front = StreamingFrontEnd()
    assert front.push(np.zeros(CHUNK_SAMPLES, np.float32)).shape == (128, MEL_FRAMES_PER_CHUNK)
    with pytest.raises(ValueError, match="6400 samples"):
        front.push(np.zeros(100, np.float32))
    with pytest.raises(ValueError):
        StreamingFrontEnd(floor_window_s=0)
