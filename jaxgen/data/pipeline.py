"""tf.data pipeline: index batches -> read -> batched preprocessing -> prefetched numpy dicts.

Batches are formed from integer indices first (jaxgen.data.order), so each process reads and decodes
only its own rows, and all preprocessing runs on whole batches in TF ops (per-example Python `map`
is slow on 2 cores). Only files of varying size are decoded and resized per example (tf.map_fn,
still inside the graph).
"""
from typing import Callable, Iterator, Optional

import numpy as np
import tensorflow as tf

from jaxgen.data.sources import Examples

# TF must never take accelerator memory from JAX (accelerator machines may have TF with GPU support).
tf.config.set_visible_devices([], "GPU")


def _crop_resize(image: tf.Tensor, size: int, crop: str) -> tf.Tensor:
  """float32 [..., h, w, c] -> [..., size, size, c]: center crop to a square (crop="center") then
  bilinear resize with antialiasing (a no-op when already size x size, so pixels stay exact)."""
  # Static sizes where known (arrays), so that the no-op case is detected at trace time.
  h = image.shape[-3] if image.shape[-3] is not None else tf.shape(image)[-3]
  w = image.shape[-2] if image.shape[-2] is not None else tf.shape(image)[-2]
  if crop == "center":
    side = tf.minimum(h, w) if tf.is_tensor(h) or tf.is_tensor(w) else min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    image = image[..., top:top + side, left:left + side, :]
  if image.shape[-3] == size and image.shape[-2] == size:
    return image
  return tf.image.resize(image, [size, size], method="bilinear", antialias=True)


def _to_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
  """float32 [..., c_in] -> [..., channels]: drops alpha, tiles grey to RGB or takes ITU-R 601 luma."""
  if image.shape[-1] == 4:
    image = image[..., :3]
  if image.shape[-1] == channels:
    return image
  return tf.tile(image, [1] * (image.shape.rank - 1) + [3]) if channels == 3 else (
      tf.image.rgb_to_grayscale(image))


def iterate(examples: Examples, rows: Callable[[int], dict[str, np.ndarray]], start_step: int,
            num_steps: Optional[int], data_cfg, keep_labels: bool) -> Iterator[dict[str, np.ndarray]]:
  """Batches rows(s) for s = start_step, start_step + 1, ... (num_steps of them; None = forever).

  rows(s) gives {"index": int64 [L], optional "flip": bool [L], optional "mask": float32 [L]}.
  Yields {"image": float32 [L, S, S, C] in [-1, 1], "label" int32 [L] iff keep_labels,
  "caption_tokens" int32 [L, T] iff the source has captions, "mask" iff rows gives it}.
  """
  size, channels, crop = data_cfg.image_size, data_cfg.channels, data_cfg.get("crop", "center")
  sample = rows(start_step)  # Fixes the signature; raises bad batch / process arguments early.
  batch_len = len(sample["index"])
  row_names = [k for k in sample if k != "index"]
  names = list(examples.spec)
  tout = ([tf.as_dtype(sample[k].dtype) for k in row_names] +
          [tf.string if dtype is object else tf.as_dtype(dtype) for dtype, _ in examples.spec.values()])

  def read(step):
    # One Python call per batch: which rows, then read them (numpy; file sources give paths).
    r = rows(int(step))
    out = examples.read(r["index"])
    return [r[k] for k in row_names] + [out[k] for k in names]

  def process(step):
    values = tf.numpy_function(read, [step], tout, stateful=False)
    b, raw = dict(zip(row_names, values[:len(row_names)])), {}
    for v in b.values():
      v.set_shape([batch_len])
    for k, v in zip(names, values[len(row_names):]):
      v.set_shape((batch_len,) + tuple(examples.spec[k][1]))
      raw[k] = v
    if "path" in raw:  # Files of varying size: decode, crop and resize one by one.
      def decode(path):
        data = tf.io.read_file(path)
        # TF decodes JPEGs with INTEGER_FAST by default; INTEGER_ACCURATE is libjpeg's reference
        # (PIL's) decoding, up to 4 levels closer.
        img = tf.cond(tf.io.is_jpeg(data),
                      lambda: tf.io.decode_jpeg(data, channels, dct_method="INTEGER_ACCURATE"),
                      lambda: tf.io.decode_image(data, channels, expand_animations=False))
        return _crop_resize(tf.cast(img, tf.float32)[None], size, crop)[0]
      image = tf.map_fn(decode, raw["path"],
                        fn_output_signature=tf.TensorSpec([size, size, channels], tf.float32))
    else:
      image = _crop_resize(tf.cast(raw["image"], tf.float32), size, crop)
    image = _to_channels(image, channels)
    image = tf.clip_by_value(image / 127.5 - 1.0, -1.0, 1.0)
    if "flip" in b:
      image = tf.where(b["flip"][:, None, None, None], tf.reverse(image, axis=[2]), image)
    out = {"image": image}
    if keep_labels:
      out["label"] = raw["label"]
    if "caption_tokens" in raw:
      out["caption_tokens"] = raw["caption_tokens"]
    if "mask" in b:
      out["mask"] = b["mask"]
    return out

  steps = (tf.data.Dataset.counter(start_step) if num_steps is None else
           tf.data.Dataset.range(start_step, start_step + num_steps))
  ds = steps.map(process, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator()
