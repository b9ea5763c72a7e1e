"""Autoregressive image models: PixelCNN, Gated PixelCNN, PixelRNN (Row LSTM, Diagonal BiLSTM) and
PixelCNN++, trained by exact maximum likelihood and sampled pixel by pixel.

config.model.arch picks the network (ARCHS); config.model.likelihood the per-pixel distribution:
  "categorical"       a 256-way softmax per colour channel, R -> G -> B inside a pixel (PixelRNN
                      paper Sec. 3.4 / 5.1; CIFAR-10); the network gives logits [B, H, W, C, 256]
  "bernoulli"         binarized MNIST: a sigmoid per pixel, logits [B, H, W, 1]
  "logistic_mixture"  PixelCNN++'s discretized logistic mixture (jaxgen.distributions), params
                      [B, H, W, 10 M] (RGB) or [B, H, W, 3 M] (grey)
Binarized data (config.data.binarize): "dynamic" draws x ~ Bernoulli((image + 1) / 2) afresh every
training step; "static" fixes one binarization per image (a key derived from its pixels, as the
evaluation always does, so every run is scored on the same binary test set).

Losses are in nats per dimension; eval_step gives the exact NLL per image in nats ("nll") and in
bits per dimension ("bits_per_dim"). Sampling runs the network once per (pixel, channel) position
in one compiled `lax.fori_loop` (once per pixel for the logistic mixture, which draws a pixel's
channels jointly), sharded over the batch like every sampler (jaxgen.sampling), with a progress bar.
"""
import math
from typing import Callable, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxgen import distributions as D
from jaxgen import optim, progress
from jaxgen.methods.base import Batch, ConfigError, Method, cycling_labels
from jaxgen.nn.dtypes import parse_dtype
from jaxgen.state import TrainState, ema_decay, ema_init, jit_once

LIKELIHOODS = ("categorical", "bernoulli", "logistic_mixture")
BINARIZE = ("", "dynamic", "static")


# Archs with a cached sampler (jaxgen.models.pixelcnn_cache: each position computes the layers
# it changes, at its pixel / row only; same images as the naive sampler for the same rng). For them
# config.sample.cached (default True) picks it; False runs the full network at every position.
# Other archs always sample naively.
CACHED_ARCHS = ("pixelcnn", "gated_pixelcnn", "pixelcnnpp")


class Arch(NamedTuple):
  """build(config, num_values or mixture outputs) -> the Flax module; conditional: takes labels."""
  build: Callable[[ml_collections.ConfigDict, int], nn.Module]
  likelihoods: tuple[str, ...]
  conditional: bool = False


def _build_pixelcnn(c: ml_collections.ConfigDict, out: int) -> nn.Module:
  from jaxgen.models import pixelcnn  # pylint: disable=g-import-not-at-top
  m = c.model
  return pixelcnn.PixelCNN(channels=c.data.channels, hidden=m.hidden, num_blocks=m.num_blocks,
                           num_values=out, dtype=parse_dtype(m.dtype))


def _build_gated(c: ml_collections.ConfigDict, out: int) -> nn.Module:
  from jaxgen.models import pixelcnn  # pylint: disable=g-import-not-at-top
  m = c.model
  return pixelcnn.GatedPixelCNN(channels=c.data.channels, hidden=m.hidden, num_layers=m.num_layers,
                                num_values=out, num_classes=c.data.num_classes if m.conditional else 0,
                                dtype=parse_dtype(m.dtype))


def _build_pixelrnn(c: ml_collections.ConfigDict, out: int) -> nn.Module:
  from jaxgen.models import pixelrnn  # pylint: disable=g-import-not-at-top
  m = c.model
  return pixelrnn.PixelRNN(channels=c.data.channels, hidden=m.hidden, num_layers=m.num_layers,
                           layer_type=m.layer, num_values=out, dtype=parse_dtype(m.dtype))


def _build_pixelcnnpp(c: ml_collections.ConfigDict, out: int) -> nn.Module:
  del out
  from jaxgen.models import pixelcnn  # pylint: disable=g-import-not-at-top
  m = c.model
  return pixelcnn.PixelCNNpp(channels=c.data.channels, nr_resnet=m.nr_resnet, nr_filters=m.nr_filters,
                             nr_logistic_mix=m.nr_logistic_mix, dropout=m.dropout,
                             dtype=parse_dtype(m.dtype), weight_norm=m.get("weight_norm", False))


ARCHS: dict[str, Arch] = {
    "pixelcnn": Arch(_build_pixelcnn, ("categorical", "bernoulli")),
    "gated_pixelcnn": Arch(_build_gated, ("categorical", "bernoulli"), conditional=True),
    "pixelrnn": Arch(_build_pixelrnn, ("categorical", "bernoulli")),
    "pixelcnnpp": Arch(_build_pixelcnnpp, ("logistic_mixture",)),
}


class Autoregressive(Method):
  """Exact-likelihood autoregressive models; see the module docstring."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    self.validate()
    m, d = config.model, config.data
    self.likelihood = m.likelihood
    self.channels = d.channels
    self.shape = (d.image_size, d.image_size, d.channels)
    self.num_dims = d.image_size * d.image_size * d.channels
    self.conditional = bool(m.get("conditional", False))
    self.model = ARCHS[m.arch].build(config, 1 if m.likelihood == "bernoulli" else 256)
    self.tx = optim.make_optimizer(config.optim, config.train.num_steps)

  def validate(self) -> None:
    c = self.config
    m, d = c.model, c.data
    if m.arch not in ARCHS:
      raise ConfigError(f"config.model.arch={m.arch!r} is unknown; use one of {sorted(ARCHS)}.")
    arch = ARCHS[m.arch]
    if m.likelihood not in arch.likelihoods:
      raise ConfigError(f"config.model.likelihood={m.likelihood!r} does not fit arch {m.arch!r}; "
                        f"use one of {arch.likelihoods}.")
    binarize = d.get("binarize", "")
    if binarize not in BINARIZE:
      raise ConfigError(f"config.data.binarize={binarize!r} is unknown; use one of {BINARIZE}.")
    if (m.likelihood == "bernoulli") != bool(binarize):
      raise ConfigError(f"config.model.likelihood={m.likelihood!r} with config.data.binarize="
                        f"{binarize!r}: the Bernoulli likelihood models binarized data and only it; "
                        "set both (bernoulli + dynamic/static) or neither.")
    if m.likelihood == "bernoulli" and d.channels != 1:
      raise ConfigError(f"config.model.likelihood='bernoulli' needs grey images (config.data.channels"
                        f"=1), got {d.channels}.")
    if m.get("conditional", False) and not (arch.conditional and d.num_classes > 0):
      raise ConfigError(f"config.model.conditional=True needs a conditional arch "
                        f"({[a for a, v in ARCHS.items() if v.conditional]}) and labels "
                        f"(config.data.num_classes > 0); got arch {m.arch!r}, num_classes "
                        f"{d.num_classes}.")
    if m.get("weight_norm", False) and m.arch != "pixelcnnpp":
      raise ConfigError(f"config.model.weight_norm=True is PixelCNN++'s (arch='pixelcnnpp'); arch "
                        f"{m.arch!r} has no weight-normalised layers: set weight_norm=False.")
    parse_dtype(m.dtype)

  @property
  def cond_keys(self) -> tuple[str, ...]:
    return ("label",) if self.config.model.get("conditional", False) else ()

  def default_cond(self, num: int) -> Optional[dict]:
    return {"label": cycling_labels(num, self.config.data.num_classes)} if self.cond_keys else None

  # ---- data -------------------------------------------------------------------------------------
  def targets(self, images: jax.Array, rng: Optional[jax.Array]) -> jax.Array:
    """The data the model is scored on, float32 [B, H, W, C] in [-1, 1]: the 8-bit images, or binary
    images as -1 / +1 (dynamic: fresh Bernoulli draws with `rng`; static, and always when rng is
    None (evaluation): one fixed binarization per image)."""
    if not self.config.data.get("binarize", ""):
      return images.astype(jnp.float32)
    if rng is None or self.config.data.binarize == "static":
      b = D.binarize_per_example(images)
    else:
      b = jax.random.bernoulli(rng, (images + 1.0) / 2.0).astype(jnp.float32)
    return 2.0 * b - 1.0

  def _apply(self, params, x, labels, *, train: bool, rng: Optional[jax.Array] = None):
    rngs = {"dropout": rng} if train and rng is not None else None
    args = (x, labels) if self.conditional else (x,)
    return self.model.apply({"params": params}, *args, train=train, rngs=rngs)

  def log_prob(self, x: jax.Array, out: jax.Array) -> jax.Array:
    """log p(x) per image, float32 [B], from the network's output `out` for input x."""
    if self.likelihood == "categorical":
      lp = D.categorical_log_prob(x, out)
    elif self.likelihood == "bernoulli":
      lp = D.bernoulli_log_prob((x + 1.0) / 2.0, out.astype(jnp.float32))
    else:
      lp = D.discretized_mix_logistic_log_prob(x, out)
    return jnp.sum(lp.reshape(lp.shape[0], -1), axis=-1)

  # ---- Method interface -------------------------------------------------------------------------
  @property
  def init_from_data(self) -> bool:
    """Weight-normalised PixelCNN++ initialises its scales and biases from the first batch."""
    return bool(self.config.model.get("weight_norm", False))

  def init(self, rng: jax.Array, example_batch: Batch) -> TrainState:
    if self.init_from_data:     # data-dependent init: the batch's values matter
      x = self.targets(example_batch["image"], None)
      labels = example_batch.get("label", jnp.zeros((x.shape[0],), jnp.int32))
    else:
      x, labels = jnp.zeros((1,) + self.shape, jnp.float32), jnp.zeros((1,), jnp.int32)
    args = (x, labels) if self.conditional else (x,)
    params = jit_once(lambda r: self.model.init(r, *args, train=False))(rng)["params"]
    return TrainState.create(params=params, opt_state=self.tx.init(params), rng=rng,
                             ema_params=ema_init(params, self.config.train))

  def train_step(self, state: TrainState, batch: Batch, rng: jax.Array) -> tuple[TrainState, dict]:
    bin_rng, drop_rng = jax.random.split(rng)
    x = self.targets(batch["image"], bin_rng)
    labels = batch.get("label")

    def loss_fn(params):
      out = self._apply(params, x, labels, train=True, rng=drop_rng)
      return -jnp.mean(self.log_prob(x, out)) / self.num_dims   # nats per dimension

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    decay = ema_decay(self.config.train, state.step, x.shape[0])
    return state.apply_gradients(self.tx, grads, decay), {
        "loss": loss, "bits_per_dim": loss / math.log(2), "grad_norm": optax.tree.norm(grads)}

  def eval_step(self, state: TrainState, batch: Batch, rng: jax.Array) -> dict:
    """Per image: "nll" (exact, nats) and "bits_per_dim", from the sampling (EMA) params."""
    del rng
    x = self.targets(batch["image"], None)
    nll = -self.log_prob(x, self._apply(self.sampling_params(state), x, batch.get("label"), train=False))
    return {"nll": nll, "bits_per_dim": nll / (self.num_dims * math.log(2))}

  def sample(self, state: TrainState, rng: jax.Array, num: int, cond: Optional[Batch] = None) -> jax.Array:
    """`num` images float32 [num, H, W, C] in [-1, 1] (binary models: -1 / +1), drawn position by
    position in raster order, channels R -> G -> B inside a pixel; with the cached sampler where
    config.sample.cached (see CACHED_ARCHS), else with the full network at every position."""
    params = self.sampling_params(state)
    labels = None
    if self.conditional:
      labels = jnp.asarray((self.default_cond(num) if cond is None else cond)["label"], jnp.int32)
    h, w, c = self.shape
    sc = self.config.get("sample", {})
    if sc.get("cached", True) and self.config.model.arch in CACHED_ARCHS:
      from jaxgen.models import pixelcnn_cache  # pylint: disable=g-import-not-at-top
      return pixelcnn_cache.sample(self.model, params, rng, num, (h, w), labels,
                                   show_progress=sc.get("progress", True))
    joint = self.likelihood == "logistic_mixture"     # one draw per pixel, channels jointly
    per_pixel = 1 if joint else c
    total = h * w * per_pixel
    show = progress.wanted(self.config.get("sample", {}).get("progress", True), total)

    def body(i, x):
      pixel, ch = jnp.divmod(i, per_pixel)
      row, col = jnp.divmod(pixel, w)
      out = self._apply(params, x, labels, train=False)
      key = jax.random.fold_in(rng, i)
      if joint:
        value = D.sample_mix_logistic(key, out[:, row, col], c)          # [num, C]
        x = x.at[:, row, col].set(value)
      else:
        if self.likelihood == "categorical":
          k = jax.random.categorical(key, out[:, row, col, ch].astype(jnp.float32))
          value = jnp.clip(k.astype(jnp.float32) / 127.5 - 1.0, -1.0, 1.0)
        else:
          value = 2.0 * jax.random.bernoulli(key, jax.nn.sigmoid(out[:, row, col, 0])) - 1.0
        x = x.at[:, row, col, ch].set(value)
      if show:
        progress.in_loop(i, total, f"{self.config.model.arch} sampling")
      return x

    return jax.lax.fori_loop(0, total, body, jnp.zeros((num, h, w, c), jnp.float32))
