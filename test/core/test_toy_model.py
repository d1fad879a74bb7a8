"""The project's own toy model.

Built once per test session from scratch (about a minute), then checked for the release layout, the
loader's view of it, and the behaviour demos rely on.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from safetensors import safe_open

from audio_interaction_ros.core import checkpoint as ckpt
from audio_interaction_ros.core.audio import read_audio_file
from audio_interaction_ros.core.protocol import (CHUNK_SAMPLES, CONTROL_IDS, ENGLISH, ONLINE,
                                                 SAMPLE_RATE_HZ, TEXT_BEGIN, TEXT_END)
from audio_interaction_ros.toy import build
from audio_interaction_ros.toy.check import beep_clip, noise_clip, run_segments
from audio_interaction_ros.toy.networks import build_encoder, encode_chunks, stock_encode
from audio_interaction_ros.toy.sounds import beep, noise, other_tone, sine
from audio_interaction_ros.toy.spec import BEEP_REPLY, LM, SPEECH_REPLY, TOY_VERSION
from audio_interaction_ros.toy.speech import espeak_available, synthesize
from audio_interaction_ros.toy.tokenizer import SPECIAL_TOKENS, tokenizer_json

BEEP = (BEEP_REPLY, "surprise")
SPEECH = (SPEECH_REPLY, "normal")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="session")
def toy_dir(tmp_path_factory):
    """Trained from scratch once per session: this is the test of the builder itself."""
    return build.ensure_toy_model(tmp_path_factory.mktemp("toy") / "ckpt")


@pytest.fixture(scope="session")
def toy(toy_dir):
    from audio_interaction_ros.core.model import AudioInteractionModel

    return AudioInteractionModel.load(toy_dir, device="cpu", dtype="float32")


def answers(replies, segment: int = 0) -> list[tuple[int, str, str | None]]:
    return [(r.chunk, r.text, r.emotion) for r in replies if r.segment == segment]


def pad_clip(*pieces: tuple[float, np.ndarray], seconds: float) -> np.ndarray:
    """Silence of ``seconds`` with each (start_s, sound) added in."""
    clip = np.zeros(int(seconds * SAMPLE_RATE_HZ), dtype=np.float32)
    for start_s, sound in pieces:
        start = int(start_s * SAMPLE_RATE_HZ)
        clip[start:start + len(sound)] += sound[:len(clip) - start]
    return clip


# --------------------------------------------------------------------------- layout


def test_release_layout(toy_dir):
    files = ckpt.verify_checkpoint(toy_dir)  # index complete, total_size equals the payload
    assert [p.name for p in files.shards] == ["model-00001-of-00002.safetensors",
                                              "model-00002-of-00002.safetensors"]
    index = json.loads((toy_dir / ckpt.INDEX_FILE).read_text())
    config = yaml.safe_load((toy_dir / ckpt.LM_CONFIG_FILE).read_text())
    assert config["padded_vocab_size"] == 151936 and config["n_embd"] == LM.n_embd
    assert config["attn_bias"] is True and config["bias"] is False
    qkv_rows = (config["n_head"] + 2 * config["n_query_groups"]) * config["head_size"]
    shapes = {}
    for shard in files.shards:
        with safe_open(str(shard), "pt") as handle:
            for key in handle.keys():
                shapes[key] = tuple(handle.get_slice(key).get_shape())
                assert index["weight_map"][key] == shard.name
    assert shapes["transformer.wte.weight"] == (151936, LM.n_embd)
    assert shapes["lm_head.weight"] == (151936, LM.n_embd)
    assert shapes["transformer.h.0.attn.qkv.weight"] == (qkv_rows, LM.n_embd)
    assert shapes["transformer.h.1.attn.qkv.bias"] == (qkv_rows,)
    assert set(shapes) == set(index["weight_map"])
    marker = json.loads((toy_dir / build.MARKER).read_text())
    assert marker["toy_version"] == TOY_VERSION
    size = sum(p.stat().st_size for p in toy_dir.rglob("*") if p.is_file())
    assert size < 50e6


def test_only_used_rows_are_nonzero(toy_dir):
    with safe_open(str(toy_dir / "model-00002-of-00002.safetensors"), "pt") as handle:
        head = handle.get_tensor("lm_head.weight").float()
    used = set(torch.nonzero(head.abs().sum(dim=1)).flatten().tolist())
    assert {151605, TEXT_BEGIN, TEXT_END, 151617, 151618} <= used
    assert len(used) < 30


def test_encoder_weights_load_into_the_stock_class(toy_dir, toy):
    state = torch.load(toy_dir / ckpt.ENCODER_FILE, weights_only=True)
    assert set(state) == set(toy.encoder.state_dict())
    assert toy.encoder.config.output_dim == toy.embed_dim == LM.n_embd


def test_tokenizer_prefix_and_special_ids(toy, toy_dir):
    from audio_interaction_ros.core.session import ListenSession

    prefix = ListenSession(toy).prefix_ids
    assert prefix[:4] == [ONLINE, ENGLISH, TEXT_BEGIN, TEXT_BEGIN] and prefix[-1] == TEXT_END
    assert len(prefix) == 46  # as with Qwen's real BPE: 41 prompt tokens
    assert all(i < 151600 for i in prefix[4:-1])
    for text in (BEEP_REPLY, SPEECH_REPLY, "any other text, even ünïcode"):
        assert toy.decode(toy.encode_text(text)) == text
    assert toy.tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == \
        list(range(151643, 151643 + len(SPECIAL_TOKENS)))
    vocab = json.loads((toy_dir / "tokenizer.json").read_text())["model"]["vocab"]
    assert set(CONTROL_IDS) <= set(vocab.values())


def test_tokenizer_is_reproducible():
    assert json.dumps(tokenizer_json()) == json.dumps(tokenizer_json())


def test_batched_encoder_equals_stock_forward():
    torch.manual_seed(0)
    encoder = build_encoder().eval()
    mel = torch.randn(5, 128, 40)
    with torch.no_grad():
        assert torch.allclose(encode_chunks(encoder, mel), stock_encode(encoder, mel), atol=1e-5)


# --------------------------------------------------------------------------- behaviour


@pytest.mark.parametrize("frontend", ["streaming", "reference"])
def test_beep_is_answered_in_its_chunk(toy, frontend):
    replies = run_segments(toy, [beep_clip(amp=0.3)], frontend)
    assert answers(replies) == [(2, *BEEP)]
    assert not answers(replies, segment=1)  # nothing in the trailing silence


def test_beep_reply_tokens(toy):
    from audio_interaction_ros.core.events import ReplyDone
    from audio_interaction_ros.core.features import StreamingFrontEnd
    from audio_interaction_ros.core.sampling import SamplingConfig
    from audio_interaction_ros.core.session import ListenSession, SessionConfig

    session = ListenSession(toy, SessionConfig(sampling=SamplingConfig(temperature=0.0)))
    front_end = StreamingFrontEnd()
    done = []
    for chunk in beep_clip().reshape(-1, CHUNK_SAMPLES):
        done += [e for e in session.listen(toy.encode(front_end.push(chunk))[0])
                 if isinstance(e, ReplyDone)]
    assert len(done) == 1
    assert done[0].tokens == (TEXT_BEGIN, 151617, *toy.encode_text(BEEP_REPLY), TEXT_END)
    assert done[0].p_speak > 0.99 and not done[0].truncated


def test_long_beep_at_any_level_is_answered_per_chunk(toy):
    """0.6 s starting mid-chunk covers 3/4 of chunks 2 and 3: both are answered."""
    clip = pad_clip((0.9, beep(0.6, 0.05)), seconds=3.2)
    assert answers(run_segments(toy, [clip])) == [(2, *BEEP), (3, *BEEP)]


@pytest.mark.parametrize("name", ["silence", "white", "pink", "tone_440", "tone_2500", "chord"])
def test_no_reply_to_silence_noise_and_other_tones(toy, name):
    rng = np.random.default_rng(7)
    clip = {
        "silence": np.zeros(10 * CHUNK_SAMPLES, dtype=np.float32),
        "white": noise_clip(rms=0.05),
        "pink": noise(rng, 10 * CHUNK_SAMPLES, "pink", 0.03),
        "tone_440": pad_clip((0.5, sine(440, 1.5, 0.5)), seconds=4.0),
        "tone_2500": pad_clip((0.5, sine(2500, 1.5, 0.5)), seconds=4.0),
        "chord": pad_clip((0.3, other_tone(rng, 2.0, 0.4)), seconds=4.0),
    }[name]
    for frontend in ("streaming", "reference"):
        assert run_segments(toy, [clip], frontend) == [], frontend


@pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed: no speech to test")
def test_speech_is_answered_after_it_ends(toy):
    speech = synthesize("please bring me a glass of water from the kitchen",
                        voice="en-us", speed_wpm=165, pitch=50)
    start_s = 0.7
    end_s = start_s + len(speech) / SAMPLE_RATE_HZ
    clip = pad_clip((start_s, 0.3 * speech / np.max(np.abs(speech))), seconds=end_s + 2.0)
    first_after = int(np.ceil(end_s / 0.4))  # the first chunk with no speech
    for frontend in ("streaming", "reference"):
        replies = answers(run_segments(toy, [clip], frontend))
        assert [(text, emotion) for _, text, emotion in replies] == [SPEECH], frontend
        assert first_after - 1 <= replies[0][0] <= first_after + 1, (frontend, replies, end_s)


def test_long_history_does_not_change_the_answers(toy):
    """100 s (about 3300 tokens of context): a beep every 10 s, noise bed, nothing else."""
    rng = np.random.default_rng(3)
    seconds = 100.0
    clip = noise(rng, int(seconds * SAMPLE_RATE_HZ), "white", 0.001)
    starts = np.arange(4.0, seconds - 1, 10.0)
    clip = pad_clip(*[(s, beep(0.4, float(rng.uniform(0.1, 0.7)))) for s in starts],
                    seconds=seconds) + clip
    replies = answers(run_segments(toy, [clip], trailing_s=0))
    assert replies == [(int(s / 0.4), *BEEP) for s in starts]


@pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed: no speech learnt")
def test_real_speech_recording_is_answered(toy, audio_dir):
    """A real voice (16 kHz recording, 10.8 s): the toy learnt speech from espeak-ng only."""
    samples = read_audio_file(audio_dir / "02_translate_sample02_02.wav")
    replies = run_segments(toy, [samples])
    assert replies and {(r.text, r.emotion) for r in replies} == {SPEECH}
    last = replies[-1]
    assert last.segment == 1 or last.chunk >= len(samples) // CHUNK_SAMPLES - 1


# --------------------------------------------------------------------------- cache semantics


def test_cached_model_is_reused_without_training(toy_dir, monkeypatch, capsys):
    def no_build(*args, **kwargs):
        raise AssertionError("rebuilt a current toy")

    monkeypatch.setattr(build, "build_toy_model", no_build)
    assert build.ensure_toy_model(toy_dir) == toy_dir
    assert build.main(["--out", str(toy_dir), "--print-path"]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == str(toy_dir)  # scripts read only the path from stdout
    assert "TOY" in out.err and "zhifeixie/AudioInteraction" in out.err


def test_other_version_or_incomplete_is_stale(toy_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(toy_dir, copy)
    assert build.is_current(copy)
    marker = json.loads((copy / build.MARKER).read_text())
    (copy / build.MARKER).write_text(json.dumps({**marker, "toy_version": "0"}))
    assert not build.is_current(copy)
    (copy / build.MARKER).write_text(json.dumps(marker))
    (copy / "model-00002-of-00002.safetensors").write_bytes(b"truncated")
    assert not build.is_current(copy)


def test_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    from audio_interaction_ros.toy import speech, train

    def broken(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(speech, "espeak_available", lambda: False)
    monkeypatch.setattr(train, "train", broken)
    target = tmp_path / "toy"
    with pytest.raises(RuntimeError, match="interrupted"):
        build.ensure_toy_model(target, log=lambda message: None)
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_never_replaces_a_directory_that_is_not_a_toy(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "model-00001-of-00004.safetensors").write_bytes(b"precious")
    with pytest.raises(build.ToyBuildError, match="not a toy"):
        build.ensure_toy_model(real, log=lambda message: None)
    assert (real / "model-00001-of-00004.safetensors").read_bytes() == b"precious"


def test_default_dir_names_the_version(monkeypatch, tmp_path):
    monkeypatch.delenv(build.ENV_DIR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert build.default_toy_dir() == tmp_path / "audio_interaction_ros" / f"toy-{TOY_VERSION}"
    monkeypatch.setenv(build.ENV_DIR, str(tmp_path / "mine"))
    assert build.default_toy_dir() == tmp_path / "mine"
