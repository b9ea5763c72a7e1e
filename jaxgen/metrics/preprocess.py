"""Preprocessing of the FID protocol: uint8 NHWC -> TF1 bilinear resize to 299x299 -> (x - 128) / 128.

TF1's `resize_bilinear(align_corners=False)` maps output pixel i to input coordinate `i * in / out` (no
half-pixel offset), unlike `jax.image.resize`, which moves the features of 32x32 images by ~30%. Being
separable, it is two small matrix products, jitted per input size apart from the network.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen import images as images_lib

SIZE = 299


def tf1_resize_matrix(in_size: int, out_size: int) -> np.ndarray:
  """[out_size, in_size] float32 weights of TF1 bilinear resizing (align_corners=False) along one axis."""
  src = np.arange(out_size, dtype=np.float64) * (in_size / out_size)
  lo = np.floor(src).astype(np.int64)
  hi = np.minimum(lo + 1, in_size - 1)
  frac = (src - lo).astype(np.float32)
  m = np.zeros((out_size, in_size), np.float32)
  rows = np.arange(out_size)
  m[rows, lo] += 1 - frac
  m[rows, hi] += frac
  return m


@functools.partial(jax.jit, static_argnames="size")
def resize_and_scale(images: jax.Array, size: int = SIZE) -> jax.Array:
  """uint8 [N, H, W, C in {1, 3}] -> float32 [N, size, size, 3] in [-1, 1): TF1 resize, (x - 128) / 128."""
  _, h, w, c = images.shape
  x = images.astype(jnp.float32)
  if (h, w) != (size, size):
    hp = jax.lax.Precision.HIGHEST  # exact float32 products; the weights are not bf16-representable
    x = jnp.einsum("oh,nhwc->nowc", tf1_resize_matrix(h, size), x, precision=hp)
    x = jnp.einsum("pw,nowc->nopc", tf1_resize_matrix(w, size), x, precision=hp)
  if c == 1:
    x = jnp.broadcast_to(x, (*x.shape[:3], 3))
  return (x - 128.0) / 128.0


def check_images(images) -> np.ndarray:
  """Validates images for the extractor: uint8 [N, H, W, 1 or 3]; returns them as numpy."""
  images = np.asarray(images)
  if images.dtype != np.uint8:
    raise TypeError(f"Inception features need uint8 images in [0, 255], got dtype {images.dtype}; "
                    "convert images in [-1, 1] with jaxgen.metrics.to_uint8(images)")
  if images.ndim != 4 or images.shape[-1] not in (1, 3) or min(images.shape[1:3]) < 1:
    raise ValueError(f"Inception features need images of shape [N, H, W, 1 or 3] (NHWC), got "
                     f"{images.shape}")
  return images


def to_uint8(images) -> np.ndarray:
  """float images in [-1, 1] [..., H, W, C] -> uint8 [0, 255] as round((x + 1) * 127.5), clipped.

  The one conversion used for both data and samples, so that both sides of FID see the same
  quantisation. Values outside [-1, 1] (a sampler's overshoot) are clipped; NaN is an error."""
  x = np.asarray(images, np.float32)
  if not np.issubdtype(np.asarray(images).dtype, np.floating):
    raise TypeError(f"to_uint8 expects float images in [-1, 1], got dtype {np.asarray(images).dtype}")
  if not np.all(np.isfinite(x)):
    raise ValueError("to_uint8 got NaN or infinite pixel values; check the sampler's output")
  return images_lib.to_uint8(x)
