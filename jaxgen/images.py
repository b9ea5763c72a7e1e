"""Sample grids: float images in [-1, 1] -> uint8 grids -> PNG."""
import math
import os

import numpy as np


def to_uint8(images: np.ndarray) -> np.ndarray:
  """float [..., H, W, C] in [-1, 1] -> uint8, rounding to the nearest of 256 levels."""
  return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def make_grid(images: np.ndarray, ncol: int | None = None, pad: int = 2) -> np.ndarray:
  """[N, H, W, C] float in [-1, 1] -> uint8 [rows*(H+pad)+pad, ncol*(W+pad)+pad, C] grid."""
  images = to_uint8(images)
  n, h, w, c = images.shape
  ncol = ncol or int(math.ceil(math.sqrt(n)))
  nrow = int(math.ceil(n / ncol))
  grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), 255, np.uint8)
  for i in range(n):
    r, col = divmod(i, ncol)
    grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = images[i]
  return grid


def save_png(path: str, grid: np.ndarray) -> None:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)


def _resize_nearest(images: np.ndarray, h: int, w: int) -> np.ndarray:
  """[N, h0, w0, c] -> [N, h, w, c] by nearest-neighbour indexing (shows pixels as they are)."""
  rows = (np.arange(h) * images.shape[1]) // h
  cols = (np.arange(w) * images.shape[2]) // w
  return images[:, rows][:, :, cols]


def make_pair_grid(inputs: list[np.ndarray], outputs: np.ndarray, pad: int = 2) -> np.ndarray:
  """Grid of (input_1, ..., output) tiles: each input float [N, h, w, c] in [-1, 1] is shown at the
  outputs' size (nearest neighbour) and channel count beside its output [N, H, W, C]."""
  n, h, w, c = outputs.shape
  shown = []
  for x in inputs:
    x = _resize_nearest(np.asarray(x, np.float32), h, w)
    if x.shape[-1] != c:
      x = np.repeat(x[..., :1], c, axis=-1) if c == 3 else x.mean(-1, keepdims=True)
    shown.append(x)
  tiles = np.concatenate(shown + [np.asarray(outputs, np.float32)], axis=2)   # [N, H, (k+1) W, C]
  return make_grid(tiles, ncol=max(1, int(math.ceil(math.sqrt(n / (len(inputs) + 1))))), pad=pad)
