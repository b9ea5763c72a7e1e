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
