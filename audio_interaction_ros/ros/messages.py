"""Pure conversions between ROS messages and core types (no node, no publishing here).

ros-drivers' audio_common_msgs types are imported where used: with mgonzs13's package of the same
name installed instead (ros/audio_input.py), the interaction node still imports this module.
"""
from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from hri_msgs.msg import LiveSpeech
from numpy.typing import NDArray
from std_msgs.msg import Header

from ..core.audio import PcmFormat

LEVELS = {"OK": DiagnosticStatus.OK, "WARN": DiagnosticStatus.WARN,
          "ERROR": DiagnosticStatus.ERROR, "STALE": DiagnosticStatus.STALE}


# Humble's hri_msgs LiveSpeech has `language` (IETF, en-US) besides `locale`; Jazzy's has `locale`
_LIVE_SPEECH_FIELDS = frozenset(LiveSpeech.get_fields_and_field_types())


def pcm_format(info) -> PcmFormat:
    """What an AudioInfo says about the stream (validated by the caller's decode)."""
    return PcmFormat(sample_rate_hz=int(info.sample_rate), channels=int(info.channels),
                     sample_format=info.sample_format or "S16LE",
                     coding_format=info.coding_format)


def payload(data) -> NDArray[np.uint8]:
    """An AudioData's ``data`` (uint8[]) as a uint8 view, without a per-element copy."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, dtype=np.uint8)
    if hasattr(data, "typecode"):  # array.array('B') as rclpy delivers uint8[]
        return np.frombuffer(data, dtype=np.uint8)
    return np.asarray(data, dtype=np.uint8)


def stamp_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def audio_info(sample_rate_hz: int, channels: int, sample_format: str = "S16LE"):
    """A ros-drivers AudioInfo for raw PCM."""
    from audio_common_msgs.msg import AudioInfo

    return AudioInfo(channels=channels, sample_rate=sample_rate_hz, sample_format=sample_format,
                     bitrate=sample_rate_hz * channels * _bits(sample_format),
                     coding_format="pcm")


def _bits(sample_format: str) -> int:
    return {"S16LE": 16, "S32LE": 32, "F32LE": 32, "U8": 8, "S8": 8}.get(sample_format, 0)


def audio_message(pcm: bytes | NDArray, stamp: Time, frame_id: str):
    """A ros-drivers AudioDataStamped holding raw PCM bytes."""
    from audio_common_msgs.msg import AudioData, AudioDataStamped

    data = pcm.tobytes() if isinstance(pcm, np.ndarray) else bytes(pcm)
    return AudioDataStamped(header=Header(stamp=stamp, frame_id=frame_id),
                            audio=AudioData(data=data))


def live_speech(stamp: Time, frame_id: str, *, incremental: str = "", final: str = "",
                confidence: float = 0.0, locale: str = "") -> LiveSpeech:
    """A LiveSpeech; ``locale`` (language_REGION) fills whichever of ``locale`` and ``language``
    (IETF: language-REGION) the installed hri_msgs has."""
    fields = dict(header=Header(stamp=stamp, frame_id=frame_id), incremental=incremental,
                  final=final, confidence=float(confidence))
    if "locale" in _LIVE_SPEECH_FIELDS:
        fields["locale"] = locale
    if "language" in _LIVE_SPEECH_FIELDS:
        fields["language"] = locale.replace("_", "-")
    return LiveSpeech(**fields)


def diagnostics(stamp: Time, name: str, hardware_id: str, level: str, message: str,
                values: dict[str, str]) -> DiagnosticArray:
    """One DiagnosticStatus in a DiagnosticArray; keys carry their unit in the name."""
    status = DiagnosticStatus(level=LEVELS[level], name=name, message=message,
                              hardware_id=hardware_id,
                              values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
    return DiagnosticArray(header=Header(stamp=stamp), status=[status])
