"""PortAudio without its libraries' chatter on stderr.

Opening PortAudio on a machine without a sound card makes ALSA print some sixty ``ALSA lib ...``
lines and JACK a few more ("jack server is not running or cannot be started") before the node's
own one-line error, which then goes unseen. Both libraries offer a hook for their messages:
ALSA's ``snd_lib_error_set_handler`` and JACK's ``jack_set_error_function`` /
``jack_set_info_function``. Here they route every message to a callable (a node's debug log), and
``JACK_NO_START_SERVER`` keeps PortAudio's JACK backend from starting a JACK server on the way.
No rclpy here: any user of PyAudio can call it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable

# void handler(const char *file, int line, const char *function, int err, const char *fmt, ...);
# the variadic arguments are not read (on x86-64 and aarch64 Linux they travel like fixed ones).
_ALSA_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                                 ctypes.c_int, ctypes.c_char_p)
_JACK_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p)

_hooks: list[object] = []  # the C callbacks must live as long as the libraries may call them
_sink: list[Callable[[str], None]] = [lambda text: None]


def quiet_portaudio(log: Callable[[str], None]) -> None:
    """Send ALSA's and JACK's messages to ``log`` instead of stderr (process-wide; the last
    ``log`` given wins). Call before ``pyaudio.PyAudio()``; missing libraries are skipped."""
    _sink[0] = log
    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    if _hooks:
        return
    alsa = _load("asound")
    if alsa is not None:
        hook = _ALSA_HANDLER(_on_alsa)
        alsa.snd_lib_error_set_handler(hook)
        _hooks.append(hook)
    jack = _load("jack")
    if jack is not None:
        hook = _JACK_HANDLER(_on_jack)
        jack.jack_set_error_function(hook)
        jack.jack_set_info_function(hook)
        _hooks.append(hook)


def _load(name: str) -> ctypes.CDLL | None:
    """The shared library PortAudio uses (the same instance: dlopen shares it), or None."""
    path = ctypes.util.find_library(name)
    if path is None:
        return None
    try:
        return ctypes.CDLL(path)
    except OSError:
        return None


def _on_alsa(file: bytes | None, line: int, function: bytes | None, err: int,
             fmt: bytes | None) -> None:
    text = (fmt or b"").decode(errors="replace")
    _sink[0](f"ALSA {(function or b'').decode(errors='replace')}: {text} (error {err})")


def _on_jack(message: bytes | None) -> None:
    _sink[0](f"JACK: {(message or b'').decode(errors='replace')}")
