"""Every QoS profile of the package, defined once and named for what the topic carries.

A publisher and its subscribers must agree (a RELIABLE subscription receives nothing from a best
effort publisher; a TRANSIENT_LOCAL subscription gets the last message only from a
TRANSIENT_LOCAL publisher), so nodes, tests and benchmarks import these instead of writing their
own copies.
"""
from __future__ import annotations

from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)

# State that a late subscriber needs at once: the last value is kept for it (AudioInfo,
# is_speaking, is_replying, robot_speaking).
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL,
                     history=HistoryPolicy.KEEP_LAST)

# Audio messages. Deep queues: a burst (a driver catching up, a bag, 10x playback) must not be
# cut to the last few before the executor takes them.
AUDIO_DEPTH = 200
AUDIO_RELIABLE = QoSProfile(depth=AUDIO_DEPTH, reliability=ReliabilityPolicy.RELIABLE,
                            history=HistoryPolicy.KEEP_LAST)
# Best effort subscriptions match both reliable and best-effort publishers.
AUDIO_BEST_EFFORT = QoSProfile(depth=AUDIO_DEPTH, reliability=ReliabilityPolicy.BEST_EFFORT,
                               durability=DurabilityPolicy.VOLATILE,
                               history=HistoryPolicy.KEEP_LAST)
# A live microphone: late audio is useless, so the standard sensor profile (best effort).
MICROPHONE = qos_profile_sensor_data

# Text: a streamed reply is one LiveSpeech message per token; keep them all until the consumer's
# executor runs (max_reply_tokens is at most 1024, replies are usually far shorter). Also for a
# subscriber that must see every message of a burst (the monitor prints one line per message).
TEXT = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE,
                  history=HistoryPolicy.KEEP_LAST)

# Periodic values where only the recent ones matter (speak probability, /diagnostics).
PERIODIC = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      history=HistoryPolicy.KEEP_LAST)
