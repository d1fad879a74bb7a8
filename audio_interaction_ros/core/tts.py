"""Text to 16 kHz speech for typed instructions (the model takes its tasks as spoken audio,
PROTOCOL.md §3.7). No rclpy here. espeak-ng is used because it is in every distribution and needs
no model download; a neural voice can replace it behind the same function.
"""
from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import soundfile
from numpy.typing import NDArray

from .audio import resample, to_mono

MAX_TEXT_CHARS = 2000


def synthesize(text: str, voice: str = "en-us", words_per_minute: int = 160,
               timeout_s: float = 30.0) -> NDArray[np.float32]:
    """Speak ``text`` with espeak-ng; float32 mono at 16 kHz. ValueError on any failure."""
    text = text.strip()
    if not text:
        raise ValueError("nothing to synthesize: the text is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"instruction text of {len(text)} characters is longer than "
                         f"{MAX_TEXT_CHARS}")
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise ValueError("espeak-ng is not installed (apt-get install espeak-ng); it speaks typed "
                         "instructions into the stream")
    try:
        proc = subprocess.run([exe, "-v", voice, "-s", str(words_per_minute), "--stdout", "--",
                               text], capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ValueError(f"espeak-ng took more than {timeout_s} s") from exc
    if proc.returncode != 0 or not proc.stdout:
        raise ValueError(f"espeak-ng failed for voice {voice!r}: "
                         f"{proc.stderr.decode(errors='replace').strip() or proc.returncode}")
    data, rate_hz = soundfile.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
    return resample(to_mono(data), int(rate_hz))
