"""Byte-level UTF-8 tokenizer for captions (no TensorFlow, no vocabulary file).

Token = UTF-8 byte + 1 (so tokens are in [1, 256]); 0 is padding. Vocabulary size is 257.
"""
from typing import Sequence

import numpy as np

VOCAB_SIZE = 257  # 256 byte values + padding (0).


def tokenize(texts: Sequence[str], max_len: int) -> np.ndarray:
  """Encodes `texts` as int32 [N, max_len]: UTF-8 bytes + 1, truncated to max_len, 0-padded."""
  if max_len < 1:
    raise ValueError(f"max_len={max_len} must be >= 1.")
  out = np.zeros((len(texts), max_len), np.int32)
  for i, text in enumerate(texts):
    b = np.frombuffer(text.encode("utf-8")[:max_len], np.uint8)
    out[i, :len(b)] = b.astype(np.int32) + 1
  return out


def detokenize(tokens: np.ndarray) -> list[str]:
  """Inverse of `tokenize` for int [N, L] tokens: drops padding (0); a multi-byte character cut by
  truncation decodes as U+FFFD instead of raising."""
  tokens = np.asarray(tokens)
  return [bytes((t[t > 0] - 1).astype(np.uint8)).decode("utf-8", errors="replace") for t in tokens]


# Tokenizers by config.data.tokenizer: "bytes" (this module) or "clip" (CLIP's BPE,
# jaxgen.data.clip_tokenizer). Models that embed caption tokens need vocab_size(data_cfg) entries.
TOKENIZERS = ("bytes", "clip")
CLIP_VOCAB_SIZE = 49408   # = clip_tokenizer.VOCAB_SIZE (not imported here: it needs ftfy / regex)


def tokenizer_name(data_cfg) -> str:
  return data_cfg.get("tokenizer", "bytes") or "bytes"


def vocab_size(data_cfg) -> int:
  """Token ids of data_cfg's captions lie in [0, vocab_size): 257 (bytes) or 49408 (clip)."""
  return CLIP_VOCAB_SIZE if tokenizer_name(data_cfg) == "clip" else VOCAB_SIZE


def tokenize_with(tokenizer: str, texts: Sequence[str], max_len: int) -> np.ndarray:
  """int32 [N, max_len] token ids of `texts` by the named tokenizer (see TOKENIZERS)."""
  if tokenizer == "clip":
    from jaxgen.data import clip_tokenizer  # pylint: disable=g-import-not-at-top
    return clip_tokenizer.tokenize(texts, max_len)
  return tokenize(texts, max_len)


def tokenize_captions(data_cfg, texts: Sequence[str]) -> np.ndarray:
  """int32 [N, data.caption_max_len] ids of `texts` by data.tokenizer."""
  return tokenize_with(tokenizer_name(data_cfg), texts, data_cfg.caption_max_len)


def detokenize_captions(data_cfg, tokens: np.ndarray) -> list[str]:
  """Texts of caption_tokens rows made by data.tokenizer (CLIP's: cleaned, lower-cased, words
  followed by spaces)."""
  if tokenizer_name(data_cfg) == "clip":
    from jaxgen.data import clip_tokenizer  # pylint: disable=g-import-not-at-top
    return clip_tokenizer.get().detokenize(tokens)
  return detokenize(tokens)
