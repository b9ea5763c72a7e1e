""""shapes": the embedded default dataset, drawn procedurally (no files, no network).

Like ControlNet's Fill50K: one flat-coloured shape on a plain background per image. Example i of a
split is a pure function of (split, i), so any subset can be drawn in any order, in a vectorised
numpy pass (about 1 ms for 128 images of 32x32 on one core).

Classes (10) = shape x colour, label = 2 * shape_id + colour_id:
  0 red circle     1 blue circle     2 red square    3 blue square    4 red triangle
  5 blue triangle  6 red diamond     7 blue diamond  8 red cross      9 blue cross
The background (gray / white / black), the position and the size vary freely and are not part of
the label; the caption names all three attributes, e.g. "a red circle on a gray background".

Geometry, in units of the image side, for centre (cx, cy) and size r in [0.15, 0.3] (the shape
always lies inside [cx-r, cx+r] x [cy-r, cy+r], fully in the image, and covers its centre pixel):
  circle   dx^2 + dy^2 <= r^2                          area pi r^2   ~ 3.14 r^2
  square   max(|dx|, |dy|) <= 0.8 r                    area 2.56 r^2
  triangle (apex up) -r <= dy <= 0.6 r, |dx| <= 0.65 (dy + r)   area 1.664 r^2
  diamond  |dx| + |dy| <= r                            area 2 r^2
  cross    bars of half-width r/3 and half-length r    area 20/9 r^2 ~ 2.22 r^2
"""
import functools

import numpy as np

from jaxgen.data import order
from jaxgen.data import text

SHAPES = ("circle", "square", "triangle", "diamond", "cross")
COLOURS = {"red": (220, 40, 40), "blue": (40, 80, 220)}
BACKGROUNDS = {"gray": (128, 128, 128), "white": (235, 235, 235), "black": (20, 20, 20)}
NUM_CLASSES = len(SHAPES) * len(COLOURS)
AREA_OVER_R2 = {"circle": np.pi, "square": 2.56, "triangle": 1.664, "diamond": 2.0,
                "cross": 20 / 9}
SPLIT_SIZES = {"train": 50_000, "test": 10_000}
_SPLIT_IDS = {"train": 1, "test": 2}


def params(index: np.ndarray, split: str) -> dict[str, np.ndarray]:
  """Per-example attributes of examples `index` (int [n]) of `split`: "shape", "colour",
  "background" (int ids into SHAPES / COLOURS / BACKGROUNDS), "label" int32, "cx", "cy", "r" (float64,
  units of the image side)."""
  sid = _SPLIT_IDS[split]
  u = [order.hash_uniform(index, sid, k) for k in range(6)]
  shape = (u[0] * len(SHAPES)).astype(np.int32)
  colour = (u[1] * len(COLOURS)).astype(np.int32)
  r = 0.15 + 0.15 * u[3]
  margin = r + 0.02
  return {"shape": shape, "colour": colour, "label": 2 * shape + colour,
          "background": (u[2] * len(BACKGROUNDS)).astype(np.int32),
          "r": r, "cx": margin + (1 - 2 * margin) * u[4], "cy": margin + (1 - 2 * margin) * u[5]}


def captions(p: dict[str, np.ndarray]) -> list[str]:
  """Captions for the attributes returned by `params`."""
  colours, backgrounds = list(COLOURS), list(BACKGROUNDS)
  return [f"a {colours[c]} {SHAPES[s]} on a {backgrounds[b]} background"
          for s, c, b in zip(p["shape"], p["colour"], p["background"])]


@functools.lru_cache(maxsize=8)
def caption_table(tokenizer: str, caption_max_len: int) -> np.ndarray:
  """Token ids of every caption (shape, colour, background), int32 [shapes * colours * backgrounds,
  caption_max_len], row (2 * shape + colour) * len(BACKGROUNDS) + background: tokenized once."""
  grid = np.stack(np.meshgrid(np.arange(len(SHAPES)), np.arange(len(COLOURS)),
                              np.arange(len(BACKGROUNDS)), indexing="ij"), -1).reshape(-1, 3)
  caps = captions({"shape": grid[:, 0], "colour": grid[:, 1], "background": grid[:, 2]})
  table = text.tokenize_with(tokenizer, caps, caption_max_len)
  table.flags.writeable = False
  return table


def draw(index: np.ndarray, split: str, size: int, caption_max_len: int,
         tokenizer: str = "bytes") -> dict[str, np.ndarray]:
  """Examples `index` (int [n]) of `split` at size x size: {"image": uint8 [n, size, size, 3],
  "label": int32 [n] in [0, 10), "caption_tokens": int32 [n, caption_max_len]} (captions tokenized
  by `tokenizer`, see jaxgen.data.text.TOKENIZERS)."""
  p = params(np.asarray(index, np.int64), split)
  # Pixel centres in units of the image side; [n, size, size] offsets from each shape's centre.
  grid = (np.arange(size) + 0.5) / size
  dx = grid[None, None, :] - p["cx"][:, None, None]
  dy = grid[None, :, None] - p["cy"][:, None, None]
  r = p["r"][:, None, None]
  ax, ay = np.abs(dx), np.abs(dy)
  masks = np.stack([
      dx**2 + dy**2 <= r**2,
      np.maximum(ax, ay) <= 0.8 * r,
      (dy >= -r) & (dy <= 0.6 * r) & (ax <= 0.65 * (dy + r)),
      ax + ay <= r,
      ((ax <= r / 3) & (ay <= r)) | ((ay <= r / 3) & (ax <= r)),
  ])  # [num_shapes, n, size, size]
  inside = np.take_along_axis(masks, p["shape"][None, :, None, None], axis=0)[0]
  fg = np.array(list(COLOURS.values()), np.uint8)[p["colour"]]
  bg = np.array(list(BACKGROUNDS.values()), np.uint8)[p["background"]]
  image = np.where(inside[..., None], fg[:, None, None, :], bg[:, None, None, :])
  return {"image": image.astype(np.uint8), "label": p["label"].astype(np.int32),
          "caption_tokens": caption_table(tokenizer, caption_max_len)[
              p["label"] * len(BACKGROUNDS) + p["background"]]}
