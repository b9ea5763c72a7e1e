"""Input pipelines: tf.data over TFDS, image folders, captioned images, arrays (uint8 images or float
latents), the procedural "shapes" dataset and "none" (no data); deterministic, resumable in O(1), and
sliced per process.

Batches (see jaxgen.methods.base), B = the global batch size (each process gets its rows of it):
  "image"          float32 [B, S, S, C] in [-1, 1]; S = data.random_crop if > 0 (a crop of the
                   data.image_size image: random in training, centred in eval), else data.image_size.
                   Float arrays (cached latents) are passed through unchanged (any range, any C).
  "low_res"        float32 [B, S/f, S/f, C] in [-1, 1] iff data.degrade.kind="bicubic", f =
                   data.degrade.factor: "image" (after crop and flip) downsampled, for super-resolution.
  "label"          int32 [B] iff data.num_classes > 0 (with data.classes: the original labels, or
                   positions in data.classes iff data.remap_classes).
  "caption_tokens" int32 [B, data.caption_max_len] for sources with captions (captions, shapes), or
                   made from the labels by data.label_captions (e.g. "a photo of a {}." with the
                   class names of jaxgen.data.class_names); token ids by data.tokenizer: "bytes"
                   (UTF-8 bytes + 1) or "clip" (CLIP's BPE, [SOT] ... [EOT], 0-padded); ids lie in
                   [0, text.vocab_size(data)) (see jaxgen.data.text).
  "index"          int32 [B], only for data.source="none" (no "image"): the global stream positions
                   step * B + row, so the batch still has a batch axis to shard.
  "mask"           float32 [B] in eval batches: 1 real, 0 padding.
With data.streams (named streams, e.g. CycleGAN's two domains), every stream s gives its keys as
"<s>/image", "<s>/label", ..., each with B rows and its own shuffled order (seed
order.stream_seed(seed, s)), epochs and augmentations. An eval pass runs until the longest stream is
exhausted: shorter streams are padded ("<s>/mask" 0) and "mask" is 1 where any stream is real.

Importing this package does not import TensorFlow: `validate` (except for source="tfds"),
`example_batch`, `num_examples` (except tfds) and the tokenizer are TF-free; the iterators import
tf/tfds when called. The global order is a function of (seed, epoch) only; see jaxgen.data.order.
"""
import contextlib
import functools
import os
from typing import Iterator, Optional

import ml_collections
import numpy as np

from jaxgen.data import order
from jaxgen.data import sources
from jaxgen.data import text
from jaxgen.data.sources import register_arrays
from jaxgen.errors import ConfigError

__all__ = ["validate", "example_batch", "train_iterator", "eval_iterator", "num_examples",
           "register_arrays", "stream_configs"]

CAPTION_SOURCES = ("captions", "shapes")
DEGRADE_KINDS = ("", "bicubic")


def stream_configs(data_cfg) -> dict[str, ml_collections.ConfigDict]:
  """Stream name -> its data config: data.streams[name]'s overrides applied to a copy of data_cfg
  (without "streams"). {"": data_cfg} when data.streams is empty (keys without a prefix)."""
  streams = data_cfg.get("streams") or {}
  if not streams:
    return {"": data_cfg}
  base = {k: v for k, v in data_cfg.to_dict().items() if k != "streams"}
  out = {}
  for name, overrides in streams.items():
    if not name or "/" in name:
      raise ConfigError(f"data.streams name {name!r} must be non-empty and without '/' (batch keys "
                        "are '<name>/image').")
    if not isinstance(overrides, (dict, ml_collections.ConfigDict)):
      raise ConfigError(f"data.streams.{name}={overrides!r} must be a dict of data config overrides, "
                        "e.g. dict(classes=(3,)).")
    unknown = sorted(set(overrides.keys()) - set(base))
    if unknown:
      raise ConfigError(f"data.streams.{name} sets {unknown}, which are not data config keys (streams "
                        f"do not nest); use keys of config.data: {sorted(base)}.")
    cfg = ml_collections.ConfigDict(base)
    try:
      cfg.update(overrides)
    except TypeError as e:
      raise ConfigError(f"data.streams.{name}: {e}") from None
    out[name] = cfg
  return out


def _prefix(name: str) -> str:
  return f"{name}/" if name else ""


@contextlib.contextmanager
def _in_stream(name: str):
  """Names the stream in ConfigErrors raised for its (merged) config."""
  try:
    yield
  except ConfigError as e:
    if not name:
      raise
    raise ConfigError(f"data.streams.{name} (data with its overrides): {e}") from None


def _image_size(data_cfg) -> int:
  """Side of the batches' "image": data.random_crop if on, else data.image_size."""
  return data_cfg.get("random_crop", 0) or data_cfg.image_size


def _degrade(data_cfg) -> tuple[str, int]:
  degrade = data_cfg.get("degrade") or {}
  return degrade.get("kind", ""), degrade.get("factor", 1)


def _check_fields(data_cfg) -> None:
  if data_cfg.source not in sources.SOURCES:
    raise ConfigError(f"Unknown data.source={data_cfg.source!r}; use one of {sources.SOURCES}.")
  if not isinstance(data_cfg.image_size, int) or data_cfg.image_size < 1:
    raise ConfigError(f"data.image_size={data_cfg.image_size!r} must be a positive int.")
  if not isinstance(data_cfg.channels, int) or data_cfg.channels < 1 or (
      data_cfg.channels not in (1, 3) and data_cfg.source != "arrays"):
    raise ConfigError(f"data.channels={data_cfg.channels!r} must be 1 (grey) or 3 (RGB) (any C >= 1 "
                      "only for float arrays).")
  if data_cfg.get("crop", "center") not in ("center", "resize"):
    raise ConfigError(f"data.crop={data_cfg.crop!r} must be 'center' or 'resize'.")
  _check_captions(data_cfg)
  if data_cfg.num_classes < 0:
    raise ConfigError(f"data.num_classes={data_cfg.num_classes!r} must be >= 0 (0 = unlabelled).")
  classes = tuple(data_cfg.get("classes", ()))
  if (not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in classes)
      or len(set(classes)) != len(classes)):
    raise ConfigError(f"data.classes={classes!r} must be distinct int labels (() = all classes).")
  crop = data_cfg.get("random_crop", 0)
  if not isinstance(crop, int) or not 0 <= crop <= data_cfg.image_size:
    raise ConfigError(f"data.random_crop={crop!r} must be an int in [0, data.image_size="
                      f"{data_cfg.image_size}] (0 = off).")
  kind, factor = _degrade(data_cfg)
  if kind not in DEGRADE_KINDS:
    raise ConfigError(f"data.degrade.kind={kind!r} must be one of {DEGRADE_KINDS} ('' = off).")
  if kind and (not isinstance(factor, int) or factor < 1 or _image_size(data_cfg) % factor):
    what = f"data.random_crop={crop}" if crop else f"data.image_size={data_cfg.image_size}"
    raise ConfigError(f"data.degrade.factor={factor!r} must be a positive int dividing {what}; "
                      "change one so that the low-resolution side is an integer.")
  if data_cfg.get("num_eval_examples", 0) < 0:
    raise ConfigError(f"data.num_eval_examples={data_cfg.num_eval_examples!r} must be >= 0.")


def has_captions(data_cfg) -> bool:
  """Whether batches of data_cfg have "caption_tokens" (a captioned source, or label captions)."""
  return data_cfg.source in CAPTION_SOURCES or bool(data_cfg.get("label_captions"))


def _check_captions(data_cfg) -> None:
  tokenizer = data_cfg.get("tokenizer", "bytes")
  if tokenizer not in text.TOKENIZERS:
    raise ConfigError(f"data.tokenizer={tokenizer!r} must be one of {text.TOKENIZERS} (bytes: UTF-8 "
                      "bytes, vocab 257; clip: CLIP's BPE, vocab 49408).")
  template = data_cfg.get("label_captions", "")
  if template:
    if not isinstance(template, str) or template.count("{}") != 1 or template.count("{") != 1 \
        or template.count("}") != 1:
      raise ConfigError(f"data.label_captions={template!r} must be a string with one '{{}}' for the "
                        "class name and no other braces, e.g. 'a photo of a {}.'.")
    if data_cfg.source in ("captions", "none"):
      raise ConfigError(f"data.label_captions={template!r} needs labels; data.source="
                        f"{data_cfg.source!r} has none: set data.label_captions='' (off).")
    from jaxgen.data import class_names  # pylint: disable=g-import-not-at-top
    class_names.for_dataset(data_cfg)   # ConfigError if the dataset's class names are unknown.
  if not has_captions(data_cfg):
    return
  length = data_cfg.caption_max_len
  least = 3 if tokenizer == "clip" else 1
  if not isinstance(length, int) or length < least:
    what = ("CLIP captions are [SOT] + tokens + [EOT]; CLIP uses 77" if tokenizer == "clip"
            else "byte tokens per caption")
    raise ConfigError(f"data.caption_max_len={length!r} must be an int >= {least} for "
                      f"data.tokenizer={tokenizer!r} ({what}).")
  if tokenizer == "clip":
    from jaxgen.data import clip_tokenizer  # pylint: disable=g-import-not-at-top
    path = os.environ.get(clip_tokenizer.ENV)
    if path and not os.path.isfile(os.path.expanduser(path)):
      raise ConfigError(f"${clip_tokenizer.ENV}={path!r} (the CLIP BPE vocabulary for "
                        f"data.tokenizer='clip') is not a file. {clip_tokenizer.WHERE_TO_GET}")


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
  dtype, shape = ex.spec.get("image", (np.uint8, None)) if ex is not None else (np.uint8, None)
  if np.issubdtype(dtype, np.floating):  # Float arrays are passed through: no resize, no conversion.
    what = data_cfg.get("path") or data_cfg.get("name")
    if shape[0] != data_cfg.image_size or shape[1] != data_cfg.image_size:
      raise ConfigError(f"data.image_size={data_cfg.image_size} but the float arrays {what!r} are "
                        f"{shape[0]}x{shape[1]}; float arrays are never resized: set data.image_size="
                        f"{shape[0]} (square arrays only).")
    if shape[2] != data_cfg.channels:
      raise ConfigError(f"data.channels={data_cfg.channels} but the float arrays {what!r} have "
                        f"{shape[2]} channels; set data.channels={shape[2]}.")
  elif data_cfg.channels not in (1, 3):
    raise ConfigError(f"data.channels={data_cfg.channels} must be 1 (grey) or 3 (RGB) for uint8 "
                      "images (any C only for float arrays).")
  return ex


def validate(data_cfg) -> None:
  """Raises ConfigError (within seconds, never a network access) if the data config cannot work:
  bad fields or streams, unknown source / TFDS name, unprepared TFDS dataset with data.download=False,
  missing files, missing splits, labels requested from an unlabelled source, classes out of range,
  float arrays whose size or channels differ from data.image_size / data.channels."""
  for name, cfg in stream_configs(data_cfg).items():
    with _in_stream(name):
      _check_fields(cfg)
      for split in dict.fromkeys([cfg.train_split, cfg.eval_split]):
        _examples(cfg, split, load=False)


def example_batch(data_cfg, batch_size: int) -> dict[str, np.ndarray]:
  """Zeros with the keys, shapes and dtypes of `train_iterator`'s batches (no TF, no data read)."""
  batch = {}
  for name, cfg in stream_configs(data_cfg).items():
    p = _prefix(name)
    if cfg.source == "none":
      batch[p + "index"] = np.zeros((batch_size,), np.int32)
      continue
    s, c = _image_size(cfg), cfg.channels
    batch[p + "image"] = np.zeros((batch_size, s, s, c), np.float32)
    kind, factor = _degrade(cfg)
    if kind:
      batch[p + "low_res"] = np.zeros((batch_size, s // factor, s // factor, c), np.float32)
    if cfg.num_classes > 0:
      batch[p + "label"] = np.zeros((batch_size,), np.int32)
    if has_captions(cfg):
      batch[p + "caption_tokens"] = np.zeros((batch_size, cfg.caption_max_len), np.int32)
  return batch


def num_examples(data_cfg, split: str, stream: Optional[str] = None) -> int:
  """Number of examples in `split` (after data.classes, then data.num_train_examples for the train
  split). With data.streams: the smallest stream's count, or that of stream `stream` if given (an eval
  pass with streams is as long as the largest; see eval_iterator). For source="none":
  data.num_eval_examples."""
  cfgs = stream_configs(data_cfg)
  if stream is not None:
    if stream not in cfgs:
      raise ConfigError(f"No data stream {stream!r}; streams: {sorted(cfgs)}.")
    cfgs = {stream: cfgs[stream]}
  sizes = []
  for name, cfg in cfgs.items():
    with _in_stream(name):
      # Checking suffices (no loading), except for a TFDS dataset still to be downloaded, or filtered
      # by class (its labels are read when loading).
      ex = _examples(cfg, split, load=False)
      if ex is None or ex.size is None:
        ex = _examples(cfg, split, load=True)
      sizes.append(ex.size)
  return min(sizes)


def _process(process_index: Optional[int], process_count: Optional[int]) -> tuple[int, int]:
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  return process_index, process_count


def _iterate(streams, start_step, num_steps) -> Iterator[dict[str, np.ndarray]]:
  from jaxgen.data import pipeline  # pylint: disable=g-import-not-at-top
  try:
    return pipeline.iterate(streams, start_step, num_steps)
  except ValueError as e:  # Batch size not divisible by the process count, bad process index.
    raise ConfigError(str(e)) from None


def train_iterator(data_cfg, *, global_batch_size: int, seed: int, start_step: int = 0,
                   process_index: Optional[int] = None,
                   process_count: Optional[int] = None) -> Iterator[dict[str, np.ndarray]]:
  """Infinite training batches, from global step `start_step` on (O(1) to start anywhere).

  Yields this process's rows [p*L, (p+1)*L) of each global batch, L = global_batch_size //
  process_count, with the keys of `example_batch`. Order, flips and crops depend only on (seed,
  step), not on the process count; each named stream uses seed order.stream_seed(seed, name).
  process_index/count default to jax.process_index()/jax.process_count().
  """
  p, n = _process(process_index, process_count)
  streams = []
  for name, cfg in stream_configs(data_cfg).items():
    with _in_stream(name):
      _check_fields(cfg)
      ex = _examples(cfg, cfg.train_split, load=True)
    if cfg.source == "none":
      rows = functools.partial(order.position_rows, global_batch_size=global_batch_size,
                               process_index=p, process_count=n)
    else:
      crop = cfg.get("random_crop", 0)
      rows = functools.partial(order.train_rows, num_examples=ex.size,
                               global_batch_size=global_batch_size,
                               seed=order.stream_seed(seed, name) if name else seed,
                               process_index=p, process_count=n,
                               random_flip=cfg.get("random_flip", False),
                               crop_range=cfg.image_size - crop + 1 if crop else 0)
    streams.append((_prefix(name), ex, rows, cfg))
  return _iterate(streams, start_step, None)


def eval_iterator(data_cfg, *, global_batch_size: int, split: Optional[str] = None,
                  num_examples: int = -1, process_index: Optional[int] = None,  # pylint: disable=redefined-outer-name
                  process_count: Optional[int] = None) -> Iterator[dict[str, np.ndarray]]:
  """One pass over `split` (default data.eval_split) in index order, no augmentation (random crops
  are centred); the first `num_examples` examples if > 0. The last global batch is padded; every
  batch has "mask" float32 [L] (1 real, 0 padding). Per-process rows as in `train_iterator`; all
  processes get the same number of batches. With data.streams the pass is as long as the longest
  stream; each stream has "<s>/mask", and "mask" is 1 where any stream is real. source="none" gives
  data.num_eval_examples rows (none by default)."""
  p, n = _process(process_index, process_count)
  streams, totals = [], []
  for name, cfg in stream_configs(data_cfg).items():
    with _in_stream(name):
      _check_fields(cfg)
      ex = _examples(cfg, split or cfg.eval_split, load=True)
    total = min(ex.size, num_examples) if num_examples > 0 else ex.size
    rows = functools.partial(order.eval_rows, num_examples=total,
                             global_batch_size=global_batch_size, process_index=p, process_count=n)
    streams.append((_prefix(name), ex, rows, cfg))
    totals.append(total)
  return _iterate(streams, 0, order.num_eval_steps(max(totals), global_batch_size))
