"""Synthetic audio streams with per-chunk answers: what the toy model learns from.

A stream is a background (digital silence or a noise bed at a random level) with events placed
one after another: 1 kHz beeps, other tones, noise bursts and espeak-ng speech, at random levels.
Each 0.4 s chunk gets the answer the toy must give after it (PROTOCOL.md §3.6 semantics):

- ``BEEP`` when a ~1 kHz beep covers at least half the chunk (a beep covering 30-50 % is left
  unsupervised: neither answer is wrong there);
- ``SPEECH`` on the first chunk with no speech after an utterance (the reply comes once the
  speaker has finished, as the real model is trained);
- ``SILENT`` otherwise: silence, noise and other tones never get a reply.

Speech owns its chunks: nothing else starts before its reply chunk has passed, so every label is
unambiguous. Streams can end in a separate block of digital zeros, as the runner and the authors'
CLI feed after every file, and can start after a "pre-roll" heard only by the streaming front end,
so the running floor of the mel is not always set by the stream itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from ..core.protocol import CHUNK_SAMPLES, SAMPLE_RATE_HZ
from .sounds import band_limit, beep, fade, log_uniform, noise, other_tone, reverberate

SILENT, BEEP, SPEECH, IGNORE = 0, 1, 2, 3
BEEP_HZ = (940.0, 1060.0)
BEEP_MIN_COVER, BEEP_MAYBE_COVER = 0.5, 0.3
SPEECH_TAIL_GUARD = 960  # samples: an utterance never ends in the first 60 ms of a chunk
TRAILING_CHUNKS = 3  # 1.0 s of zeros padded to whole chunks, as the runner feeds after a file


@dataclass
class Stream:
    """One training stream: audio in segments (each normalised alone in reference mode)."""

    segments: list[NDArray[np.float32]]
    labels: list[int]
    content: NDArray[np.float32]  # (n_chunks, 2): speech in the chunk, beep covers half of it
    preroll: NDArray[np.float32] | None = None
    events: list[tuple[str, float, float]] = field(default_factory=list)  # kind, start s, end s

    @property
    def samples(self) -> NDArray[np.float32]:
        return np.concatenate(self.segments)


def _add(audio: NDArray[np.float32], start: int, piece: NDArray[np.float32]) -> None:
    end = min(len(audio), start + len(piece))
    if end > start:
        audio[start:end] += piece[:end - start]


def _speech_gain(rng: np.random.Generator, utterance: NDArray[np.float32],
                 bed_rms: float) -> float:
    gain = log_uniform(rng, 0.03, 0.9)
    rms = gain * float(np.sqrt(np.mean(utterance ** 2)))
    return max(gain, gain * 6 * bed_rms / max(rms, 1e-9))  # speech at least ~15 dB above the bed


class StreamMaker:
    """Random streams from one seed; ``utterances`` may be empty (no espeak-ng: no speech)."""

    def __init__(self, rng: np.random.Generator, utterances: list[NDArray[np.float32]]) -> None:
        self.rng = rng
        self.utterances = utterances

    def __call__(self, n_chunks: int) -> Stream:
        rng = self.rng
        trailing = rng.random() < 0.5
        main_chunks = max(2, n_chunks - (TRAILING_CHUNKS if trailing else 0))
        total = main_chunks * CHUNK_SAMPLES
        audio = np.zeros(total, dtype=np.float32)
        beep_mask = np.zeros(total, dtype=bool)
        speech_mask = np.zeros(total, dtype=bool)
        events: list[tuple[str, float, float]] = []

        bed_rms = 0.0
        choice = rng.random()
        if choice < 0.5:
            bed_rms = log_uniform(rng, 3e-4, 3e-2)
            audio += noise(rng, total, str(rng.choice(["white", "pink", "brown"])), bed_rms)
        elif choice < 0.65:
            audio += noise(rng, total, "white", log_uniform(rng, 3e-6, 1e-4))

        cursor = int(rng.uniform(0.0, 1.2) * SAMPLE_RATE_HZ)
        last_end = 0
        # only with trailing zeros: the reply chunk must lie inside the stream
        end_with_speech = trailing and bool(self.utterances) and rng.random() < 0.5
        while cursor < total:
            kinds, weights = ["beep", "tone", "noise", "pause"], [0.3, 0.28, 0.12, 0.04]
            if self.utterances:
                kinds.append("speech")
                weights.append(0.28)
            weights = np.array(weights) / sum(weights)
            kind = str(rng.choice(kinds, p=weights))
            if kind == "speech":
                utterance = self._utterance()
                start = max(cursor, -(-last_end // CHUNK_SAMPLES) * CHUNK_SAMPLES
                            + int(rng.integers(0, 3200)))
                end = start + len(utterance)
                if 0 < end % CHUNK_SAMPLES <= SPEECH_TAIL_GUARD:
                    start += SPEECH_TAIL_GUARD + 40
                    end += SPEECH_TAIL_GUARD + 40
                reply_chunk = -(-end // CHUNK_SAMPLES)
                if end > total or (reply_chunk >= main_chunks and not trailing):
                    break  # its reply would fall outside the stream
                _add(audio, start, _speech_gain(rng, utterance, bed_rms) * utterance)
                speech_mask[start:end] = True
                events.append(("speech", start / SAMPLE_RATE_HZ, end / SAMPLE_RATE_HZ))
                last_end = (reply_chunk + 1) * CHUNK_SAMPLES
                cursor = last_end + int(rng.uniform(0.0, 1.0) * SAMPLE_RATE_HZ)
                continue
            if end_with_speech and cursor > total - 3 * SAMPLE_RATE_HZ:
                break  # leave room for a final utterance
            seconds = {"beep": rng.uniform(0.1, 1.6), "tone": rng.uniform(0.2, 2.5),
                       "noise": rng.uniform(0.1, 2.0), "pause": rng.uniform(0.2, 1.5)}[kind]
            n = int(seconds * SAMPLE_RATE_HZ)
            if kind == "beep":
                amp = max(log_uniform(rng, 0.02, 0.9), 14 * bed_rms)
                _add(audio, cursor, beep(seconds, amp, rng.uniform(*BEEP_HZ)))
                beep_mask[cursor:cursor + n] = True
            elif kind == "tone":
                _add(audio, cursor, other_tone(rng, seconds, log_uniform(rng, 0.01, 0.8)))
            elif kind == "noise":
                burst = noise(rng, n, str(rng.choice(["white", "pink", "brown"])),
                              log_uniform(rng, 0.003, 0.25))
                _add(audio, cursor, fade(burst, 0.01))
            events.append((kind, cursor / SAMPLE_RATE_HZ, (cursor + n) / SAMPLE_RATE_HZ))
            last_end = max(last_end, cursor + n)
            cursor += n + int(rng.uniform(0.1, 2.0) * SAMPLE_RATE_HZ)
        if end_with_speech:
            self._final_utterance(audio, speech_mask, events, last_end, bed_rms)

        np.clip(audio, -1.0, 1.0, out=audio)
        segments = [audio]
        if trailing:
            segments.append(np.zeros(TRAILING_CHUNKS * CHUNK_SAMPLES, dtype=np.float32))
        n_total = main_chunks + (TRAILING_CHUNKS if trailing else 0)
        beep_cover = np.zeros(n_total)
        speech_in = np.zeros(n_total, dtype=bool)
        beep_cover[:main_chunks] = beep_mask.reshape(main_chunks, CHUNK_SAMPLES).mean(axis=1)
        speech_in[:main_chunks] = speech_mask.reshape(main_chunks, CHUNK_SAMPLES).any(axis=1)
        labels = []
        for k in range(n_total):
            if speech_in[k]:
                labels.append(SILENT)
            elif k > 0 and speech_in[k - 1]:
                labels.append(SPEECH)
            elif beep_cover[k] >= BEEP_MIN_COVER:
                labels.append(BEEP)
            elif beep_cover[k] > BEEP_MAYBE_COVER:
                labels.append(IGNORE)
            else:
                labels.append(SILENT)
        content = np.stack([speech_in, beep_cover >= BEEP_MIN_COVER], axis=1).astype(np.float32)
        return Stream(segments, labels, content, self._preroll(), events)

    def _utterance(self) -> NDArray[np.float32]:
        """Return an espeak-ng utterance, sometimes several run together.

        Real talk lasts longer than one synthetic sentence; sometimes in a room or through a
        band-limited microphone.
        """
        rng = self.rng
        pick = [self.utterances[int(rng.integers(len(self.utterances)))]]
        if rng.random() < 0.3:
            for _ in range(int(rng.integers(1, 3))):
                gap = np.zeros(int(rng.uniform(0.03, 0.2) * SAMPLE_RATE_HZ), dtype=np.float32)
                pick += [gap, self.utterances[int(rng.integers(len(self.utterances)))]]
        speech = np.concatenate(pick)
        if rng.random() < 0.5:
            speech = band_limit(rng, speech)
        if rng.random() < 0.4:
            speech = reverberate(rng, speech)
        return speech

    def _final_utterance(self, audio, speech_mask, events, last_end: int, bed_rms: float) -> None:
        """Put an utterance ending in the last chunk(s), so its reply falls in the zeros after it.

        The case of a recording that stops right after someone speaks.
        """
        rng = self.rng
        total = len(audio)
        utterance = self._utterance()
        end = total - int(rng.integers(0, CHUNK_SAMPLES - SPEECH_TAIL_GUARD))
        start = end - len(utterance)
        if start < -(-last_end // CHUNK_SAMPLES) * CHUNK_SAMPLES:
            return
        _add(audio, start, _speech_gain(rng, utterance, bed_rms) * utterance)
        speech_mask[start:end] = True
        events.append(("speech", start / SAMPLE_RATE_HZ, end / SAMPLE_RATE_HZ))

    def _preroll(self) -> NDArray[np.float32] | None:
        """Audio heard by the streaming front end before the stream (sets its running floor)."""
        rng = self.rng
        if rng.random() >= 0.3:
            return None
        n = int(rng.integers(1, 4)) * CHUNK_SAMPLES
        pick = rng.random()
        if pick < 0.4:
            return noise(rng, n, "white", log_uniform(rng, 1e-3, 0.3))
        if pick < 0.7:
            return other_tone(rng, n / SAMPLE_RATE_HZ, log_uniform(rng, 0.01, 0.9))
        return beep(n / SAMPLE_RATE_HZ, log_uniform(rng, 0.05, 0.9))
