"""Text cut into sentences as it arrives, so that speech can start before the reply ends.

Replies are spoken sentence by sentence: the first sentence is heard while the model is still
writing the next one. ``SentenceSplitter`` finds where a sentence ends in text that arrives in
pieces. Plain text handling: no rclpy, no audio.
"""
from __future__ import annotations

import re
from typing import Iterable, Iterator

MAX_SENTENCE_CHARS = 300
# A sentence ends at . ! ? or an ellipsis (then closing quotes/brackets) followed by white space,
# at a CJK full stop, or at a line break. The white space is awaited because "3." may be "3.5".
_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s)|[\u3002\uff01\uff1f]+|\n")
# Words whose final dot ends no sentence ("Dr. Smith"); a single capital is an initial ("J. Doe").
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "vs", "e.g", "i.e",
                            "approx", "fig"})
_HAS_WORD = re.compile(r"\w")


class SentenceSplitter:
    """Cuts text that arrives in pieces into sentences, each as soon as it is complete.

    ``push`` takes new text (token deltas), ``update`` the whole text so far (what
    ``LiveSpeech.incremental`` carries), ``finish`` the rest at the end of the reply. A sentence
    longer than ``max_chars`` without an end is cut at its last space, so synthesis can start.
    """

    def __init__(self, max_chars: int = MAX_SENTENCE_CHARS) -> None:
        self.max_chars = max_chars
        self.revisions = 0  # times the text so far did not extend what came before
        self._text = ""
        self._done = 0  # characters already handed out as sentences

    def push(self, piece: str) -> list[str]:
        """Append ``piece``; the sentences it completed."""
        self._text += piece
        return self._cut()

    def update(self, text_so_far: str) -> list[str]:
        """Replace the text with ``text_so_far`` (normally an extension of it)."""
        if not text_so_far.startswith(self._text):
            # a revised hypothesis: what was said stays said; go on from the same offset
            self.revisions += 1
            self._done = min(self._done, len(text_so_far))
            self._text = text_so_far
            return self._cut()
        return self.push(text_so_far[len(self._text):])

    def starts_anew(self, text_so_far: str) -> bool:
        """Tell whether ``text_so_far`` shares nothing with the text so far.

        A new reply, its predecessor's end lost (e.g. the publisher restarted before its final).
        """
        return bool(self._text) and bool(text_so_far) and text_so_far[0] != self._text[0]

    def finish(self, final_text: str | None = None) -> list[str]:
        """Return the sentences left at the end of a reply.

        ``final_text``: the whole reply, if known. The splitter is then empty, ready for the next
        reply.
        """
        out = self.update(final_text) if final_text is not None else self._cut()
        rest = self._text[self._done:].strip()
        if _HAS_WORD.search(rest):
            out.append(rest)
        self._text, self._done = "", 0
        return out

    def _cut(self) -> list[str]:
        out: list[str] = []
        for match in _END.finditer(self._text, self._done):
            if self._is_abbreviation(match.start()):
                continue
            self._emit(match.end(), out)
        while len(self._text) - self._done > self.max_chars:
            window = self._text[self._done:self._done + self.max_chars]
            space = window.rfind(" ")
            self._emit(self._done + (space if space > 0 else self.max_chars), out)
        return out

    def _emit(self, end: int, out: list[str]) -> None:
        sentence = self._text[self._done:end].strip()
        self._done = end
        if _HAS_WORD.search(sentence):  # "..." alone has nothing to say
            out.append(sentence)

    def _is_abbreviation(self, dot: int) -> bool:
        if self._text[dot] != ".":
            return False
        words = self._text[self._done:dot].split()
        word = words[-1].lstrip("(\"'") if words else ""
        return word.lower() in _ABBREVIATIONS or (len(word) == 1 and word.isupper()
                                                  and word != "I")


def sentences(text_stream: Iterable[str], max_chars: int = MAX_SENTENCE_CHARS) -> Iterator[str]:
    """Yield the sentences of streamed text (pieces, e.g. tokens) as soon as each is complete.

    The unfinished rest comes last, when the stream ends.
    """
    splitter = SentenceSplitter(max_chars)
    for piece in text_stream:
        yield from splitter.push(piece)
    yield from splitter.finish()
