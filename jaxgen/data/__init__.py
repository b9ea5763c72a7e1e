"""Input pipelines: tf.data over TFDS, image folders, captioned images, arrays and the procedural
"shapes" dataset; deterministic, resumable in O(1), and sliced per process.

Batches (see jaxgen.methods.base): "image" float32 [B, S, S, C] in [-1, 1]; "label" int32 [B] iff
data.num_classes > 0; "caption_tokens" int32 [B, data.caption_max_len] for sources with captions
(captions, shapes; see jaxgen.data.text); "mask" float32 [B] in eval batches.

Importing this package does not import TensorFlow: `validate` (except for source="tfds"),
`example_batch`, `num_examples` (except tfds) and the tokenizer are TF-free; the iterators import
tf/tfds when called. The global order is a function of (seed, epoch) only; see jaxgen.data.order.
"""
import functools
from typing import Iterator, Optional

import numpy as np

from jaxgen.data import order
from jaxgen.data import sources
from jaxgen.data.sources import register_arrays
from jaxgen.errors import ConfigError

__all__ = ["validate", "example_batch", "train_iterator", "eval_iterator", "num_examples",
           "register_arrays"]

CAPTION_SOURCES = ("captions", "shapes")


def _check_fields(data_cfg) -> None:
  if data_cfg.source not in sources.SOURCES:
    raise ConfigError(f"Unknown data.source={data_cfg.source!r}; use one of {sources.SOURCES}.")
  if not isinstance(data_cfg.image_size, int) or data_cfg.image_size < 1:
    raise ConfigError(f"data.image_size={data_cfg.image_size!r} must be a positive int.")
  if data_cfg.channels not in (1, 3):
    raise ConfigError(f"data.channels={data_cfg.channels!r} must be 1 (grey) or 3 (RGB).")
  if data_cfg.get("crop", "center") not in ("center", "resize"):
    raise ConfigError(f"data.crop={data_cfg.crop!r} must be 'center' or 'resize'.")
  if data_cfg.source in CAPTION_SOURCES and data_cfg.caption_max_len < 1:
    raise ConfigError(f"data.caption_max_len={data_cfg.caption_max_len!r} must be >= 1.")
  if data_cfg.num_classes < 0:
    raise ConfigError(f"data.num_classes={data_cfg.num_classes!r} must be >= 0 (0 = unlabelled).")


def _examples(data_cfg, split: str, load: bool) -> Optional[sources.Examples]:
  ex = sources.get(data_cfg, split, load)
  if ex is not None and data_cfg.num_classes > 0:
    if not ex.num_classes:
      raise ConfigError(f"data.num_classes={data_cfg.num_classes} but data.source="
                        f"{data_cfg.source!r} ({data_cfg.get('name') or data_cfg.get('path')!r}) "
                        "has no labels; set data.num_classes=0.")
    if data_cfg.num_classes < ex.num_classes:
      raise ConfigError(f"data.num_classes={data_cfg.num_classes} is smaller than the "
                        f"{ex.num_classes} classes of the dataset; set data.num_classes="
                        f"{ex.num_classes}.")
  return ex


def validate(data_cfg) -> None:
  """Raises ConfigError (within seconds, never a network access) if the data config cannot work:
  bad fields, unknown source / TFDS name, unprepared TFDS dataset with data.download=False, missing
  files, missing splits, labels requested from an unlabelled source."""
  _check_fields(data_cfg)
  for split in dict.fromkeys([data_cfg.train_split, data_cfg.eval_split]):
    _examples(data_cfg, split, load=False)


def example_batch(data_cfg, batch_size: int) -> dict[str, np.ndarray]:
  """Zeros with the keys, shapes and dtypes of `train_iterator`'s batches (no TF, no data read)."""
  s, c = data_cfg.image_size, data_cfg.channels
  batch = {"image": np.zeros((batch_size, s, s, c), np.float32)}
  if data_cfg.num_classes > 0:
    batch["label"] = np.zeros((batch_size,), np.int32)
  if data_cfg.source in CAPTION_SOURCES:
    batch["caption_tokens"] = np.zeros((batch_size, data_cfg.caption_max_len), np.int32)
  return batch


def num_examples(data_cfg, split: str) -> int:
  """Number of examples in `split` (after data.num_train_examples for the train split)."""
  # Checking suffices (no loading), except for a TFDS dataset still to be downloaded.
  ex = _examples(data_cfg, split, load=False) or _examples(data_cfg, split, load=True)
  return ex.size


def _process(process_index: Optional[int], process_count: Optional[int]) -> tuple[int, int]:
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  return process_index, process_count


def _iterate(ex, rows, start_step, num_steps, data_cfg) -> Iterator[dict[str, np.ndarray]]:
  from jaxgen.data import pipeline  # pylint: disable=g-import-not-at-top
  try:
    return pipeline.iterate(ex, rows, start_step, num_steps, data_cfg,
                            keep_labels=data_cfg.num_classes > 0)
  except ValueError as e:  # Batch size not divisible by the process count, bad process index.
    raise ConfigError(str(e)) from None


def train_iterator(data_cfg, *, global_batch_size: int, seed: int, start_step: int = 0,
                   process_index: Optional[int] = None,
                   process_count: Optional[int] = None) -> Iterator[dict[str, np.ndarray]]:
  """Infinite training batches, from global step `start_step` on (O(1) to start anywhere).

  Yields this process's rows [p*L, (p+1)*L) of each global batch, L = global_batch_size //
  process_count, with the keys of `example_batch`. Order and flips depend only on (seed, step), not
  on the process count. process_index/count default to jax.process_index()/jax.process_count().
  """
  _check_fields(data_cfg)
  p, n = _process(process_index, process_count)
  ex = _examples(data_cfg, data_cfg.train_split, load=True)
  rows = functools.partial(order.train_rows, num_examples=ex.size,
                           global_batch_size=global_batch_size, seed=seed, process_index=p,
                           process_count=n, random_flip=data_cfg.get("random_flip", False))
  return _iterate(ex, rows, start_step, None, data_cfg)


def eval_iterator(data_cfg, *, global_batch_size: int, split: Optional[str] = None,
                  num_examples: int = -1, process_index: Optional[int] = None,  # pylint: disable=redefined-outer-name
                  process_count: Optional[int] = None) -> Iterator[dict[str, np.ndarray]]:
  """One pass over `split` (default data.eval_split) in index order, no augmentation; the first
  `num_examples` examples if > 0. The last global batch is padded; every batch has "mask" float32
  [L] (1 real, 0 padding). Per-process rows as in `train_iterator`; all processes get the same
  number of batches."""
  _check_fields(data_cfg)
  p, n = _process(process_index, process_count)
  ex = _examples(data_cfg, split or data_cfg.eval_split, load=True)
  total = min(ex.size, num_examples) if num_examples > 0 else ex.size
  rows = functools.partial(order.eval_rows, num_examples=total, global_batch_size=global_batch_size,
                           process_index=p, process_count=n)
  return _iterate(ex, rows, 0, order.num_eval_steps(total, global_batch_size), data_cfg)
