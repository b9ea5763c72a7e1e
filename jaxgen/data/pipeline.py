"""tf.data pipeline: index batches -> read -> batched preprocessing -> prefetched numpy dicts.

Batches are formed from integer indices first (jaxgen.data.order), so each process reads and decodes
only its own rows, and all preprocessing runs on whole batches in TF ops (per-example Python `map`
is slow on 2 cores). Only files of varying size are decoded and resized per example (tf.map_fn,
still inside the graph). Several streams (data.streams) are read and preprocessed side by side for
the same step and merged into one batch under "<name>/" key prefixes.
"""
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import tensorflow as tf

from jaxgen.data.sources import Examples

# TF must never take accelerator memory from JAX (accelerator machines may have TF with GPU support).
tf.config.set_visible_devices([], "GPU")

Rows = Callable[[int], dict[str, np.ndarray]]
# (key prefix: "" or "<name>/", the stream's examples, its rows(step), its data config).
Stream = tuple[str, Examples, Rows, object]


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


def _crop_at(image: tf.Tensor, top: tf.Tensor, left: tf.Tensor, size: int) -> tf.Tensor:
  """float32 [L, H, W, C] -> [L, size, size, C]: example i's pixels [top_i, top_i + size) x
  [left_i, left_i + size) (a gather, so pixels stay exact)."""
  r = tf.range(size, dtype=top.dtype)
  image = tf.gather(image, top[:, None] + r, axis=1, batch_dims=1)
  return tf.gather(image, left[:, None] + r, axis=2, batch_dims=1)


def _image(raw: dict[str, tf.Tensor], data_cfg) -> tf.Tensor:
  """The source's images as float32 [L, S, S, C]: uint8 pixels and files are cropped / resized to
  S = data.image_size, converted to data.channels and scaled to [-1, 1]; float arrays (e.g. cached
  latents) are passed through unchanged (validated to be S x S x C already)."""
  size, channels, crop = data_cfg.image_size, data_cfg.channels, data_cfg.get("crop", "center")
  if "image" in raw and raw["image"].dtype.is_floating:
    return tf.cast(raw["image"], tf.float32)
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
  return tf.clip_by_value(image / 127.5 - 1.0, -1.0, 1.0)


def _preprocess(raw: dict[str, tf.Tensor], b: dict[str, tf.Tensor], data_cfg) -> dict[str, tf.Tensor]:
  """One stream's batch from what its source read (`raw`) and its rows (`b`): see `iterate`."""
  if not raw:  # source="none": nothing read; the rows' stream positions give the batch axis.
    out = {"index": tf.cast(b["index"], tf.int32)}
  else:
    image = _image(raw, data_cfg)
    crop = data_cfg.get("random_crop", 0)
    if crop:  # Offsets from the rows in training; centred in eval (no augmentation).
      centre = tf.fill(tf.shape(image)[:1], tf.constant((data_cfg.image_size - crop) // 2, tf.int64))
      image = _crop_at(image, b.get("crop_y", centre), b.get("crop_x", centre), crop)
    if "flip" in b:
      image = tf.where(b["flip"][:, None, None, None], tf.reverse(image, axis=[2]), image)
    out = {"image": image}
    degrade = data_cfg.get("degrade") or {}
    if degrade.get("kind", ""):  # "bicubic", the only kind (validated).
      # SRGAN (Ledig et al. 2017) made its low-resolution inputs with MATLAB's imresize (bicubic,
      # antialiased). TF's bicubic is the same Keys kernel (a = -0.5), widened by the factor when
      # antialiasing as imresize does, but it differs at the borders (imresize mirrors the image, TF
      # renormalises the kernel over the pixels inside) and is not rounded to uint8, so PSNR/SSIM
      # against published numbers can differ slightly.
      low = image.shape[1] // degrade["factor"]
      low_res = tf.image.resize(image, [low, low], method="bicubic", antialias=True)
      out["low_res"] = tf.clip_by_value(low_res, -1.0, 1.0)
    if data_cfg.num_classes > 0:
      out["label"] = raw["label"]
    if "caption_tokens" in raw:
      out["caption_tokens"] = raw["caption_tokens"]
  if "mask" in b:
    out["mask"] = b["mask"]
  return out


def iterate(streams: Sequence[Stream], start_step: int,
            num_steps: Optional[int]) -> Iterator[dict[str, np.ndarray]]:
  """Batches of steps start_step, start_step + 1, ... (num_steps of them; None = forever).

  For each stream (prefix, examples, rows, data_cfg), rows(s) gives {"index": int64 [L], optional
  "flip": bool [L], "crop_y"/"crop_x": int64 [L], "mask": float32 [L]}, and the batch gets, under
  the prefix: "image" float32 [L, S', S', C] in [-1, 1] (S' = data.random_crop or data.image_size;
  float arrays unscaled), "low_res" float32 [L, S'/f, S'/f, C] iff data.degrade.kind, "label" int32
  [L] iff data.num_classes > 0, "caption_tokens" int32 [L, T] iff the source has captions, "mask" iff
  rows gives it; or only "index" int32 [L] (the rows' positions) and "mask" for source="none". With
  prefixed streams and masks, "mask" (no prefix) is 1 where any stream's row is real.
  """
  parts = []
  for prefix, examples, rows, data_cfg in streams:
    sample = rows(start_step)  # Fixes the signature; raises bad batch / process arguments early.
    batch_len = len(sample["index"])
    row_names, names = list(sample), list(examples.spec)
    tout = ([tf.as_dtype(sample[k].dtype) for k in row_names] +
            [tf.string if dtype is object else tf.as_dtype(dtype)
             for dtype, _ in examples.spec.values()])

    def read(step, rows=rows, examples=examples, row_names=row_names, names=names):
      # One Python call per batch and stream: which rows, then read them (numpy; files give paths).
      r = rows(int(step))
      out = examples.read(r["index"])
      return [r[k] for k in row_names] + [out[k] for k in names]

    parts.append((prefix, read, tout, row_names, names, examples.spec, batch_len, data_cfg))

  def process(step):
    out = {}
    for prefix, read, tout, row_names, names, spec, batch_len, data_cfg in parts:
      values = tf.numpy_function(read, [step], tout, stateful=False)
      b = dict(zip(row_names, values[:len(row_names)]))
      raw = dict(zip(names, values[len(row_names):]))
      for v in b.values():
        v.set_shape([batch_len])
      for k, v in raw.items():
        v.set_shape((batch_len,) + tuple(spec[k][1]))
      out.update({prefix + k: v for k, v in _preprocess(raw, b, data_cfg).items()})
    masks = [v for k, v in out.items() if k.endswith("/mask")]
    if masks:
      out["mask"] = tf.reduce_max(tf.stack(masks), axis=0)
    return out

  steps = (tf.data.Dataset.counter(start_step) if num_steps is None else
           tf.data.Dataset.range(start_step, start_step + num_steps))
  ds = steps.map(process, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator()
