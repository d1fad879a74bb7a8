"""A tiny Qwen2-style byte-level BPE for the toy checkpoint, generated from scratch.

Why not ship Qwen's real tokenizer: it is 7 MB and its 151k entries would need 151k trained
embedding rows. The toy only has to encode the system prompt and its two replies, so it learns a
few hundred merges from exactly those texts, keeps the 256 byte symbols (any text still encodes),
and puts every id the protocol relies on at its real number: the repurposed control ids
151600..151619 as ordinary vocabulary entries (never produced from text, as in Qwen) and Qwen's
special tokens from 151643 on as added tokens. The merges are learned by a small deterministic
loop (ties broken by symbol order), so every build writes a byte-identical tokenizer.json.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from ..core.protocol import SYSTEM_PROMPT
from .spec import BEEP_REPLY, SPEECH_REPLY

# Qwen2's pre-tokenizer split (the GPT-4-like regex) followed by byte-level mapping.
SPLIT_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
               r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
               "use_regex": False}

# Qwen2.5-Omni's added special tokens, at their real ids.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_bos|>", "<|vision_eos|>",
    "<|vision_pad|>", "<|IMAGE|>", "<|VIDEO|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
    "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>")
FIRST_SPECIAL_ID = 151643

# Audio-Interaction's repurposed ids (TOKENS.py, VOCAB_SHIFT = 151600); names are ours.
CONTROL_NAMES: tuple[str, ...] = (
    "vocab_shift", "user", "assistant", "reserved_3", "reserved_4", "keep_silence", "reserved_6",
    "reserved_7", "pad", "online", "offline", "english", "reserved_12", "reserved_13", "happy",
    "sad", "angry", "surprise", "normal", "urgent")
FIRST_CONTROL_ID = 151600

# What the merges are learned from. Every text appears at least twice, so merging goes on until
# each word is one token: the prompt then takes 41 tokens (prefix 46, as with Qwen's real BPE).
PROMPT_WEIGHT = 2
REPLY_WEIGHT = 8
MAX_MERGES = 400


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/Qwen byte -> printable symbol table, in Qwen's id order (printable bytes first)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    symbols = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            symbols.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(s) for s in symbols)))


def _pre_tokenizer_json() -> dict:
    return {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": SPLIT_REGEX}, "behavior": "Isolated",
         "invert": False},
        dict(_BYTE_LEVEL)]}


def _words(texts: list[str]) -> Counter[tuple[str, ...]]:
    """Pre-tokenized pieces (byte-level symbols) of the corpus with their counts."""
    from tokenizers import Regex, pre_tokenizers

    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    counts: Counter[tuple[str, ...]] = Counter()
    for text in texts:
        for piece, _ in pre.pre_tokenize_str(text):
            counts[tuple(piece)] += 1
    return counts


def learn_merges(texts: list[str], max_merges: int = MAX_MERGES) -> list[tuple[str, str]]:
    """Greedy BPE: merge the most frequent adjacent pair until none occurs twice.

    Ties go to the lexicographically smallest pair, so the result depends only on the texts.
    """
    words = {word: count for word, count in _words(texts).items()}
    merges: list[tuple[str, str]] = []
    while len(merges) < max_merges:
        pairs: Counter[tuple[str, str]] = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best_count = max(pairs.values())
        if best_count < 2:
            break
        best = min(pair for pair, count in pairs.items() if count == best_count)
        merges.append(best)
        joined = best[0] + best[1]
        new_words: dict[tuple[str, ...], int] = {}
        for word, count in words.items():
            out: list[str] = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(joined)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_words[tuple(out)] = new_words.get(tuple(out), 0) + count
        words = new_words
    return merges


def corpus() -> list[str]:
    """Return the texts the toy must encode: the system prompt and its replies (weighted)."""
    return [SYSTEM_PROMPT] * PROMPT_WEIGHT + [BEEP_REPLY, SPEECH_REPLY] * REPLY_WEIGHT


def tokenizer_json(texts: list[str] | None = None) -> dict:
    """Return the tokenizer.json document (HF ``tokenizers`` format, Qwen2 pipeline)."""
    merges = learn_merges(texts if texts is not None else corpus())
    vocab: dict[str, int] = {}
    for byte_id, symbol in enumerate(bytes_to_unicode().values()):
        vocab[symbol] = byte_id
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    if len(vocab) >= FIRST_CONTROL_ID:
        raise ValueError("toy BPE vocabulary collides with the control ids")
    for offset, name in enumerate(CONTROL_NAMES):
        vocab[f"<|ctrl_{name}|>"] = FIRST_CONTROL_ID + offset
    for offset, token in enumerate(SPECIAL_TOKENS):
        vocab[token] = FIRST_SPECIAL_ID + offset
    added = [{"id": FIRST_SPECIAL_ID + offset, "content": token, "single_word": False,
              "lstrip": False, "rstrip": False, "normalized": False, "special": True}
             for offset, token in enumerate(SPECIAL_TOKENS)]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "NFC"}, "pre_tokenizer": _pre_tokenizer_json(),
        "post_processor": dict(_BYTE_LEVEL), "decoder": dict(_BYTE_LEVEL),
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": False,
                  "byte_fallback": False, "ignore_merges": False, "vocab": vocab,
                  "merges": [[a, b] for a, b in merges]},
    }


def tokenizer_config_json() -> dict:
    """tokenizer_config.json as Qwen2 ships it: no BOS, ``<|endoftext|>`` pads."""
    decoder = {str(FIRST_SPECIAL_ID + offset): {
        "content": token, "lstrip": False, "normalized": False, "rstrip": False,
        "single_word": False, "special": True} for offset, token in enumerate(SPECIAL_TOKENS)}
    return {
        "add_bos_token": False, "add_prefix_space": False, "added_tokens_decoder": decoder,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<|AUDIO|>",
                                      "<|audio_bos|>", "<|audio_eos|>"],
        "bos_token": None, "clean_up_tokenization_spaces": False, "eos_token": "<|endoftext|>",
        "errors": "replace", "model_max_length": 32768, "pad_token": "<|endoftext|>",
        "split_special_tokens": False, "tokenizer_class": "Qwen2Tokenizer", "unk_token": None,
    }


class ToyTokenizer:
    """Encoder/decoder over the generated JSON, for building training sequences without files."""

    def __init__(self, document: dict | None = None) -> None:
        from tokenizers import Tokenizer

        self.document = document if document is not None else tokenizer_json()
        self._tokenizer = Tokenizer.from_str(json.dumps(self.document))

    def encode(self, text: str) -> list[int]:
        """BPE ids, no special tokens added (as the model's reference tokenizer)."""
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=False)


def write_tokenizer(directory: Path, document: dict | None = None) -> None:
    """Write tokenizer.json and tokenizer_config.json into ``directory``."""
    document = document if document is not None else tokenizer_json()
    (directory / "tokenizer.json").write_text(json.dumps(document, ensure_ascii=False, indent=1))
    (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config_json(), indent=2))
