"""A local loudspeaker through PyAudio, for robots whose speaker is on the same computer.

No rclpy here.
"""
from __future__ import annotations

import threading

import numpy as np
from numpy.typing import NDArray


class LocalOutput:
    """A local speaker through PyAudio.

    The PortAudio callback takes from a bounded FIFO and plays silence when it is empty, so a late
    piece never blocks the publishing thread.
    """

    MAX_BUFFER_S = 30.0

    def __init__(self, device: str, rate_hz: int) -> None:
        try:
            import pyaudio
        except ImportError as exc:
            raise ValueError(f"play_locally needs PyAudio ({exc}): apt-get install "
                             "portaudio19-dev && pip install pyaudio") from exc
        self._pyaudio = pyaudio
        self._lock = threading.Lock()
        self._fifo = bytearray()
        self._max_bytes = int(self.MAX_BUFFER_S * rate_hz) * 2
        self.overflow_bytes = 0
        self._pa = pyaudio.PyAudio()
        self._stream = None
        try:
            index, name = self._choose(device)
            try:
                supported = self._pa.is_format_supported(rate_hz, output_device=index,
                                                         output_channels=1,
                                                         output_format=pyaudio.paInt16)
            except ValueError:
                supported = False
            if not supported:
                raise ValueError(f"output device {name!r} does not play {rate_hz} Hz mono "
                                 "16-bit audio; set sample_rate to a rate it accepts")
            self._stream = self._pa.open(format=pyaudio.paInt16, channels=1, rate=rate_hz,
                                         output=True, output_device_index=index,
                                         stream_callback=self._callback)
        except (ValueError, OSError) as exc:
            self.close()
            raise ValueError(str(exc)) from exc
        self.name = name

    def _choose(self, device: str) -> tuple[int, str]:
        devices = [self._pa.get_device_info_by_index(i)
                   for i in range(self._pa.get_device_count())]
        outputs = [d for d in devices if d.get("maxOutputChannels", 0) > 0]
        if not outputs:
            raise ValueError("play_locally: no audio output device exists (no sound card, or "
                             "PortAudio cannot see it: check `aplay -l`); set play_locally "
                             "false, or wav_path to keep the speech in a file")
        device = device.strip()
        if device == "":
            try:
                chosen = self._pa.get_default_output_device_info()
            except OSError:
                chosen = outputs[0]
        else:
            chosen = next((d for d in outputs if (device.isdigit() and d["index"] == int(device))
                           or (not device.isdigit() and device.lower() in d["name"].lower())),
                          None)
            if chosen is None:
                raise ValueError(f"no output device matches {device!r}; outputs: " + "; ".join(
                    f"{d['index']}: {d['name']}" for d in outputs))
        return int(chosen["index"]), str(chosen["name"])

    def write(self, pcm: NDArray[np.int16]) -> None:
        """Queue samples for playback; beyond MAX_BUFFER_S the oldest are dropped (counted)."""
        with self._lock:
            self._fifo += pcm.tobytes()
            excess = len(self._fifo) - self._max_bytes
            if excess > 0:
                del self._fifo[:excess]
                self.overflow_bytes += excess

    def _callback(self, in_data, frame_count, time_info, status):
        with self._lock:
            take = bytes(self._fifo[:frame_count * 2])
            del self._fifo[:frame_count * 2]
        return take + bytes(frame_count * 2 - len(take)), self._pyaudio.paContinue

    def close(self) -> None:
        """Stop the stream and release PortAudio (idempotent)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop_stream()
            stream.close()
        pa, self._pa = self._pa, None
        if pa is not None:
            pa.terminate()
