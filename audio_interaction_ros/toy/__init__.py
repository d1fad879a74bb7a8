"""The project's own TOY Audio-Interaction model.

Same architecture and release layout as the real 3B checkpoint, 2 layers wide 64, trained here in
about a minute on synthetic audio. It knows a ~1 kHz beep ("I hear a beep.") and the end of speech
("Someone is speaking."), nothing else.

``ensure_toy_model()`` returns its checkpoint directory, building and caching it on first use.
Importing this package is cheap: torch and transformers load only when a build starts.
"""
from __future__ import annotations

from .build import ToyBuildError, default_toy_dir, ensure_toy_model
from .spec import TOY_VERSION

__all__ = ["TOY_VERSION", "ToyBuildError", "default_toy_dir", "ensure_toy_model"]
