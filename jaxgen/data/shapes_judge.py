"""A judge of generated "shapes" images: a small CNN trained on real shapes that names the shape (5-way)
and the colour (2-way) of an image, and the "shapes_agreement" evaluator built on it.

The judge is trained on the train split drawn at the run's image size (jaxgen.data.shapes.draw, with
light Gaussian pixel noise so that near-flat generated colours are judged by their shape, not by
exact pixel values), a few hundred Adam steps, then cached as an `.npz` under $JAXGEN_CACHE
(default ~/.cache/jaxgen; jaxgen.metrics.weights.cache_dir), one file per (image_size, seed, steps,
width), so evaluations reuse it. It reaches >= 99 % shape and colour accuracy on real test images
(tests/test_shapes_judge.py checks it).

`ShapesAgreement` generates config.eval.judge_num_samples class-conditional samples (labels cycling
0..9, label = 2 * shape + colour) and reports the fraction whose judged shape / colour / both match
the requested label: "shape_agreement", "colour_agreement", "class_agreement". Chance is 0.2, 0.5
and 0.1.
"""
import functools
import os
import pathlib
import tempfile
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import traverse_util

from jaxgen import evaluators
from jaxgen.data import shapes
from jaxgen.errors import ConfigError
from jaxgen.metrics import weights

VERSION = 1            # bump when the network or its training changes: old cache files are ignored
DEFAULT_STEPS = 800
DEFAULT_WIDTH = 32
BATCH_SIZE = 128
NUM_SHAPES = len(shapes.SHAPES)
NUM_COLOURS = len(shapes.COLOURS)


class Judge(nn.Module):
  """(images float [B, S, S, 3] in [-1, 1]) -> (shape logits [B, 5], colour logits [B, 2]).

  Three 3x3 conv stages (width, 2 width, 4 width; average-pooled 2x between them), then global mean
  and max pooling (shapes sit anywhere in the image) and a small dense head."""
  width: int = DEFAULT_WIDTH

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    w = self.width
    for i, ch in enumerate((w, 2 * w, 4 * w)):
      if i:
        x = nn.avg_pool(x, (2, 2), (2, 2))
      x = nn.relu(nn.Conv(ch, (3, 3))(x))
      x = nn.relu(nn.Conv(ch, (3, 3))(x))
    x = jnp.concatenate([jnp.mean(x, axis=(1, 2)), jnp.max(x, axis=(1, 2))], axis=-1)
    x = nn.relu(nn.Dense(4 * w)(x))
    logits = nn.Dense(NUM_SHAPES + NUM_COLOURS)(x)
    return logits[:, :NUM_SHAPES], logits[:, NUM_SHAPES:]


def real_images(index: np.ndarray, split: str, image_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Real shapes examples `index` of `split`: (images float32 [n, S, S, 3] in [-1, 1], labels int32
  [n])."""
  ex = shapes.draw(np.asarray(index), split, image_size, caption_max_len=1)
  return ex["image"].astype(np.float32) / 127.5 - 1.0, ex["label"]


def train(image_size: int, seed: int = 0, steps: int = DEFAULT_STEPS, width: int = DEFAULT_WIDTH,
          batch_size: int = BATCH_SIZE) -> dict:
  """Trains a judge on random train-split batches; returns its params (a nested dict)."""
  model = Judge(width)
  params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, image_size, image_size, 3)))["params"]
  tx = optax.adam(optax.warmup_cosine_decay_schedule(0.0, 6e-3, max(steps // 20, 1), steps, 3e-5))
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, x, y, key):
    # Light pixel noise (std uniform in [0, 0.1] per image): robust to the small colour wobble of
    # generated images, still far too weak to hide a shape.
    k1, k2 = jax.random.split(key)
    sigma = jax.random.uniform(k1, (x.shape[0], 1, 1, 1), maxval=0.1)
    x = x + sigma * jax.random.normal(k2, x.shape)

    def loss_fn(p):
      s_logits, c_logits = model.apply({"params": p}, x)
      return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(s_logits, y // NUM_COLOURS)
                      + optax.softmax_cross_entropy_with_integer_labels(c_logits, y % NUM_COLOURS))

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  rng = np.random.default_rng(seed)
  key = jax.random.PRNGKey(seed + 1)
  loss = jnp.nan
  for i in range(steps):
    x, y = real_images(rng.integers(0, shapes.SPLIT_SIZES["train"], batch_size), "train", image_size)
    params, opt_state, loss = step(params, opt_state, x, y, jax.random.fold_in(key, i))
  logging.info("shapes judge (%dpx, seed %d): %d steps, final loss %.4f", image_size, seed, steps,
               float(loss))
  return jax.device_get(params)


def cache_path(image_size: int, seed: int = 0, steps: int = DEFAULT_STEPS,
               width: int = DEFAULT_WIDTH) -> pathlib.Path:
  return weights.cache_dir() / (f"shapes_judge_v{VERSION}_{image_size}px_seed{seed}_steps{steps}"
                                f"_w{width}.npz")


def load_or_train(image_size: int, seed: int = 0, steps: int = DEFAULT_STEPS,
                  width: int = DEFAULT_WIDTH) -> dict:
  """The judge's params from the cache, trained (and cached) on first use."""
  path = cache_path(image_size, seed, steps, width)
  if path.is_file():
    try:
      with np.load(path) as z:
        return traverse_util.unflatten_dict({tuple(k.split("/")): z[k] for k in z.files})
    except (OSError, ValueError, EOFError) as e:   # a damaged cache file: retrain over it
      logging.warning("shapes judge cache %s is unreadable (%s); retraining", path, e)
  logging.info("training the shapes judge at %dpx (cached in %s)", image_size, path)
  params = train(image_size, seed, steps, width)
  flat = {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(params).items()}
  path.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
    np.savez(f, **flat)   # atomic: an interrupted run never leaves half a cache file
  os.replace(f.name, path)
  return params


@functools.lru_cache(maxsize=None)
def _predict_fn(width: int):
  model = Judge(width)

  @jax.jit
  def predict_batch(params, x):
    s_logits, c_logits = model.apply({"params": params}, x)
    return jnp.argmax(s_logits, -1), jnp.argmax(c_logits, -1)

  return predict_batch


def predict(params: dict, images: np.ndarray, batch_size: int = 250) -> tuple[np.ndarray, np.ndarray]:
  """images float [n, S, S, 3] in [-1, 1] -> (shape ids int [n] in [0, 5), colour ids int [n] in
  [0, 2)). The judge's width is read off its params."""
  fn = _predict_fn(int(params["Conv_0"]["kernel"].shape[-1]))
  images = np.clip(np.asarray(images, np.float32), -1.0, 1.0)
  s_out, c_out = [], []
  for i in range(0, images.shape[0], batch_size):
    x = images[i:i + batch_size]
    n = x.shape[0]
    if n < batch_size:   # pad: one compiled shape for every batch
      x = np.concatenate([x, np.zeros((batch_size - n,) + x.shape[1:], x.dtype)])
    s, c = jax.device_get(fn(params, x))
    s_out.append(s[:n])
    c_out.append(c[:n])
  return np.concatenate(s_out), np.concatenate(c_out)


def agreement(params: dict, images: np.ndarray, labels: np.ndarray) -> dict:
  """Fractions of `images` (float [n, S, S, 3] in [-1, 1]) whose judged shape / colour / both equal
  those of `labels` (int [n], label = 2 * shape + colour)."""
  labels = np.asarray(labels)
  s, c = predict(params, images)
  shape_ok = s == labels // NUM_COLOURS
  colour_ok = c == labels % NUM_COLOURS
  return {"shape_agreement": float(np.mean(shape_ok)),
          "colour_agreement": float(np.mean(colour_ok)),
          "class_agreement": float(np.mean(shape_ok & colour_ok))}


class ShapesAgreement(evaluators.Evaluator):
  """"shapes_agreement": how often class-conditional samples show the requested shape and colour,
  by the shapes judge. config.eval.judge_num_samples samples (default 1000); config.eval.judge_steps
  the judge's training steps (default DEFAULT_STEPS; fewer only for smoke tests)."""

  def validate(self) -> None:
    c = self.config
    if c.data.source != "shapes":
      raise ConfigError(f"config.eval.evaluators includes 'shapes_agreement', which judges samples of "
                        f"the shapes dataset, but config.data.source={c.data.source!r}; remove it or "
                        "set config.data.source='shapes'.")
    conditional = c.get("diffusion", ml_collections.ConfigDict()).get("class_conditional", True)
    if c.data.num_classes != shapes.NUM_CLASSES or not conditional:
      raise ConfigError(f"config.eval.evaluators includes 'shapes_agreement', which needs a model "
                        f"conditioned on the {shapes.NUM_CLASSES} shapes classes, but "
                        f"config.data.num_classes={c.data.num_classes}"
                        + ("" if conditional else " and config.diffusion.class_conditional=False")
                        + f"; set data.num_classes={shapes.NUM_CLASSES} and a class-conditional "
                        "method, or remove the evaluator.")
    if c.data.channels != 3:
      raise ConfigError(f"'shapes_agreement' judges RGB images but config.data.channels="
                        f"{c.data.channels}; set it to 3.")
    for key, default in (("judge_num_samples", 1000), ("judge_steps", DEFAULT_STEPS)):
      if c.eval.get(key, default) < 1:
        raise ConfigError(f"config.eval.{key}={c.eval.get(key)} must be >= 1.")

  def __call__(self, ctx: "evaluators.Context") -> dict:
    num = int(self.config.eval.get("judge_num_samples", 1000))
    samples, cond = ctx.generate(num, "shapes_agreement")
    if not cond or "label" not in cond:
      raise ConfigError("'shapes_agreement' needs samples drawn with requested labels; this method "
                        "returned no label conditioning.")
    # One judge for every run (seed 0), so that runs with different seeds are judged alike.
    params = load_or_train(samples.shape[1], steps=int(self.config.eval.get("judge_steps", DEFAULT_STEPS)),
                           width=DEFAULT_WIDTH)
    return agreement(params, samples, cond["label"])
