"""The robot's voice, apart from the model.

Text to speech (``tts``), sentences of streamed text (``sentences``), paced speech audio
(``speaker``) and a local loudspeaker (``local_output``).

It needs only ``core/audio.py`` (resampling): no torch, no transformers, no rclpy, so a speech
node runs where the model does not.
"""
