"""The audio input, whichever audio stack the robot runs.

The installed ``audio_common_msgs`` and the message type on the topic are found at runtime, and
each message becomes what core/ingest.py takes (payload bytes, the format it carries if any, its
stamp if any).

Two packages share the name ``audio_common_msgs`` and only one can be installed:
- ros-drivers/audio_common: ``AudioDataStamped`` / unstamped ``AudioData`` (raw bytes), the format
  on a separate ``AudioInfo`` topic (transient local);
- mgonzs13/audio_common (whisper_ros, llama_ros): ``AudioStamped`` / unstamped ``Audio``, five
  typed sample arrays and a PortAudio ``AudioInfo`` inside every message.
The variant is told by the classes the package has. ``audio_type`` picks stamped or unstamped;
``auto`` follows what the topic's publishers offer (checked again by ``refresh()``), stamped when
none is up yet.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..core.audio import PORTAUDIO_FORMATS, PcmFormat, portaudio_payload
from . import messages

AUDIO_TYPES = ("auto", "stamped", "data")


@dataclass(frozen=True)
class Variant:
    """One audio_common_msgs: its name and the message classes that carry audio."""

    name: str
    stamped: type
    data: type
    info: type | None  # the separate format topic's type (ros-drivers only)

    def type_name(self, kind: str) -> str:
        """Return the graph's ROS type name of the ``stamped`` or ``data`` message."""
        return f"audio_common_msgs/msg/{getattr(self, kind).__name__}"


def detect_variant() -> Variant:
    """Tell the installed audio_common_msgs by its classes (mgonzs13's has AudioStamped)."""
    msgs = importlib.import_module("audio_common_msgs.msg")
    if hasattr(msgs, "AudioStamped") and hasattr(msgs, "Audio"):
        return Variant("mgonzs13", msgs.AudioStamped, msgs.Audio, None)
    if hasattr(msgs, "AudioDataStamped") and hasattr(msgs, "AudioInfo"):
        return Variant("ros-drivers", msgs.AudioDataStamped, msgs.AudioData, msgs.AudioInfo)
    raise RuntimeError(f"audio_common_msgs ({msgs.__file__}) has neither ros-drivers' "
                       "AudioDataStamped nor mgonzs13's AudioStamped")


@dataclass(frozen=True)
class AudioPiece:
    """One message in core terms."""

    payload: NDArray[np.uint8]
    fmt: PcmFormat | None = None  # carried by the message (mgonzs13); None: the info topic's
    stamp_s: float | None = None  # header stamp; None: unstamped, stamped on arrival
    frame_id: str = ""  # the microphone's TF frame (header.frame_id; '' when unstamped)
    refused: str = ""  # the message contradicts itself (why); payload is then empty


def to_piece(variant: Variant, msg) -> AudioPiece:
    """Convert a message of either variant, stamped or not (pure: no node, no state)."""
    header = getattr(msg, "header", None)
    stamp_s = messages.stamp_seconds(header.stamp) if header is not None else None
    frame_id = header.frame_id if header is not None else ""
    if variant.info is not None:  # ros-drivers: raw bytes
        data = msg.audio if header is not None else msg
        return AudioPiece(messages.payload(data.data), None, stamp_s, frame_id)
    audio = msg.audio if header is not None else msg
    info = audio.info
    arrays = {name: getattr(audio.audio_data, name) for name, _, _ in PORTAUDIO_FORMATS.values()}
    try:
        payload, fmt = portaudio_payload(arrays, info.format, info.channels, info.rate)
    except ValueError as exc:
        return AudioPiece(np.zeros(0, np.uint8), None, stamp_s, frame_id, refused=str(exc))
    return AudioPiece(payload, fmt, stamp_s, frame_id)


class AudioInput:
    """The audio (and, for ros-drivers, audio info) subscriptions of a node.

    The callbacks get the messages as they come (convert audio ones with ``to_piece(input.variant,
    msg)``).
    """

    def __init__(self, node, variant: Variant, audio_type: str, on_audio: Callable[[object], None],
                 on_info: Callable[[object], None], audio_qos, info_qos,
                 topic: str = "audio", info_topic: str = "audio_info") -> None:
        if audio_type not in AUDIO_TYPES:
            raise ValueError(f"audio_type must be one of {', '.join(AUDIO_TYPES)}, "
                             f"got {audio_type!r}")
        self.variant = variant
        self.audio_type = audio_type
        self.kind = "data" if audio_type == "data" else "stamped"
        self._node, self._on_audio, self._on_info = node, on_audio, on_info
        self._qos, self._info_qos = audio_qos, info_qos
        self._topic, self._info_topic = topic, info_topic
        self._sub = None
        self._info_sub = None

    def open(self) -> None:
        """Subscribe (in ``auto``, to what the topic's publishers offer now, else stamped)."""
        if self.audio_type == "auto":
            self.kind = self._offered_kind(self.kind)
        self._subscribe(self.kind)
        if self.variant.info is not None:
            self._info_sub = self._node.create_subscription(
                self.variant.info, self._info_topic, self._on_info, self._info_qos)

    def refresh(self) -> str | None:
        """Switch to the other message type (``auto``) if only it is published on the topic.

        That is the case of a driver started after this node. Returns what changed, for the log,
        or None.
        """
        if self.audio_type != "auto" or self._sub is None:
            return None
        kind = self._offered_kind(self.kind)
        if kind == self.kind:
            return None
        self._subscribe(kind)
        return f"audio_type auto: the publishers offer {self.describe()}"

    def _offered_kind(self, current: str) -> str:
        """Return ``current`` unless the topic's publishers offer only the other message type."""
        topic = self._node.resolve_topic_name(self._topic)
        offered = {info.topic_type for info in self._node.get_publishers_info_by_topic(topic)}
        other = "stamped" if current == "data" else "data"
        if self.variant.type_name(other) in offered and \
                self.variant.type_name(current) not in offered:
            return other
        return current

    def describe(self) -> str:
        """E.g. ``ros-drivers audio_common_msgs/msg/AudioDataStamped on /audio``.

        Reads no subscription handle: a diagnostics callback on another executor thread may
        describe the input while a transition closes it, and a destroyed subscription's
        ``topic_name`` raises (it ended the fleet test's executor once). The node resolves the
        same name (namespace, remaps), as ``_offered_kind`` does.
        """
        topic = self._node.resolve_topic_name(self._topic) if self._sub is not None else \
            self._topic
        return f"{self.variant.name} {self.variant.type_name(self.kind)} on {topic}"

    def close(self) -> None:
        """Destroy the subscriptions (idempotent)."""
        for sub in (self._sub, self._info_sub):
            if sub is not None:
                self._node.destroy_subscription(sub)
        self._sub = self._info_sub = None

    def _subscribe(self, kind: str) -> None:
        if self._sub is not None:
            self._node.destroy_subscription(self._sub)
        self.kind = kind
        self._sub = self._node.create_subscription(
            getattr(self.variant, kind), self._topic, self._on_audio, self._qos)
