"""Facts of the Audio-Interaction streaming protocol (PROTOCOL.md §2-§3), defined once.

No rclpy here: every other module imports its geometry and token ids from this file.
"""
from __future__ import annotations

SAMPLE_RATE_HZ = 16_000
CHUNK_SAMPLES = 6_400  # 0.4 s: the model decides once per chunk
CHUNK_SECONDS = CHUNK_SAMPLES / SAMPLE_RATE_HZ
MEL_BINS = 128
MEL_HOP_SAMPLES = 160
MEL_FFT_SAMPLES = 400
MEL_FRAMES_PER_CHUNK = CHUNK_SAMPLES // MEL_HOP_SAMPLES  # 40
AUDIO_TOKENS_PER_CHUNK = 10  # encoder output rows per chunk (one per 40 ms)

# Special ids (src/audiointeraction/TOKENS.py). 151601..151619 are ordinary BPE entries that
# the model repurposes, so they are handled by id and never handed to the detokenizer.
USER = 151601
ASSISTANT = 151602
KEEP_SILENCE = 151605
PAD = 151608
ONLINE = 151609
OFFLINE = 151610
ENGLISH = 151611
TEXT_END = 151643
TEXT_BEGIN = 151644  # also SYSTEM
AUDIO_PAD = 151646
AUDIO_BEGIN = 151647
AUDIO_END = 151648
CONTROL_IDS = frozenset(range(151600, 151620))

EMOTIONS: dict[int, str] = {
    151614: "happy",
    151615: "sad",
    151616: "angry",
    151617: "surprise",
    151618: "normal",
    151619: "urgent",
}

SYSTEM_PROMPT = (
    "You are a helpful assistant. When there is no user text, if the audio contains a question, "
    "please answer it. If it is a sound effect, determine based on the sound whether help is "
    "needed."
)

# One listening block: the audio slot the 10 encoder rows are written into, then the position
# whose logits hold the decision (KEEP_SILENCE or TEXT_BEGIN).
LISTEN_BLOCK_IDS: tuple[int, ...] = (AUDIO_BEGIN,) + (PAD,) * AUDIO_TOKENS_PER_CHUNK + (ASSISTANT,)
AUDIO_SLOT_OFFSET = 1  # index of the first PAD inside LISTEN_BLOCK_IDS

# The published model was trained with sequences of at most this many positions.
TRAINED_CONTEXT_TOKENS = 4096
