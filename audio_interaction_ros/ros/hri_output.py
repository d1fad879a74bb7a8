"""ros4hri (REP-155) output: what the model transcribes, published as one voice that an HRI stack
(libhri/pyhri, a dialogue manager) consumes as it consumes asr_vosk's.

- ``/humans/voices/tracked`` (hri_msgs/IdsList): the voice id, every ``TRACKED_PERIOD_S`` (an HRI
  listener learns of a voice from this list, and only then subscribes to its topics);
- ``/humans/voices/<id>/speech`` (hri_msgs/LiveSpeech): the transcript as it is generated
  (``incremental``, the text so far), then ``final`` with the model's probability as confidence;
- ``/humans/voices/<id>/is_speaking`` (std_msgs/Bool): true from the moment a transcribing session
  decides it heard speech to transcribe until its final text, as asr_vosk keeps it true from its
  first partial result to its final one. The model has no separate voice-activity output, and a
  reply session's speak probability says whether the *robot* should talk, not whether a human is.

Only sessions whose ``output`` is ``transcript`` feed the voice: their text is what the human
said. A reply session's text is the robot's answer; on ``speech`` a dialogue manager would answer
it as if the human had said it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from hri_msgs.msg import IdsList, LiveSpeech
from std_msgs.msg import Bool, Header

from ..core.events import Decision, Event, ReplyDelta, ReplyDone
from . import messages, qos

TRACKED_PERIOD_S = 1.0
VOICES_NS = "/humans/voices"


class HriVoice:
    """The REP-155 topics of one voice, fed with the engine's events."""

    def __init__(self, node, voice_id: str, sessions: Iterable[str],
                 locale: Callable[[], str]) -> None:
        """Create lifecycle publishers (silent until the node activates) and the tracked timer.

        :param voice_id: one ROS name token (the ``hri_voice_id`` parameter checks it).
        :param sessions: names of the sessions whose text is the voice's speech (transcribers).
        """
        self.voice_id = voice_id
        self.sessions = frozenset(sessions)
        self._node, self._locale = node, locale
        self._text: dict[str, str] = {}
        self._speaking: set[str] = set()
        make = node.create_lifecycle_publisher
        self._speech = make(LiveSpeech, f"{VOICES_NS}/{voice_id}/speech", qos.TEXT)
        self._is_speaking = make(Bool, f"{VOICES_NS}/{voice_id}/is_speaking", qos.LATCHED)
        self._tracked = make(IdsList, f"{VOICES_NS}/tracked", qos.PERIODIC)
        self._timer = node.create_timer(TRACKED_PERIOD_S, self.publish_tracked)

    def publish_tracked(self) -> None:
        """The voice is tracked for as long as the node is active."""
        self._tracked.publish(IdsList(header=Header(stamp=self._node.get_clock().now().to_msg()),
                                      ids=[self.voice_id]))

    def on_activate(self) -> None:
        """Announce the voice at once, not speaking."""
        self.publish_tracked()
        self._is_speaking.publish(Bool(data=False))

    def on_event(self, event: Event, stamp) -> None:
        """Mirror a transcribing session's events (called on the engine thread)."""
        session = getattr(event, "session", None)
        if session not in self.sessions:
            return
        if isinstance(event, Decision) and event.speak:
            self._text[session] = ""
            self._set_speaking(session, True)
        elif isinstance(event, ReplyDelta):
            self._text[session] = self._text.get(session, "") + event.text
            self._speech.publish(messages.live_speech(
                stamp, "", incremental=self._text[session], locale=self._locale()))
        elif isinstance(event, ReplyDone):
            self._speech.publish(messages.live_speech(
                stamp, "", final=event.text, confidence=event.p_speak,
                locale=self._locale()))
            self._set_speaking(session, False)

    def close(self) -> None:
        """Destroy the publishers and the timer."""
        self._node.destroy_timer(self._timer)
        for pub in (self._speech, self._is_speaking, self._tracked):
            self._node.destroy_publisher(pub)

    def _set_speaking(self, session: str, speaking: bool) -> None:
        before = bool(self._speaking)
        (self._speaking.add if speaking else self._speaking.discard)(session)
        if bool(self._speaking) != before:
            self._is_speaking.publish(Bool(data=bool(self._speaking)))
