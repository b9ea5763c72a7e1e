"""Generative adversarial networks: the home of every GAN variant's training rule.

One `GAN` method serves all variants; a config picks the parts:
  config.model.arch   which (generator, discriminator) pair: ARCHS ("dcgan")
  config.gan.loss     which adversarial loss: jaxgen.gan.losses.LOSSES ("non_saturating", "lsgan", "hinge")
  config.optim.generator / config.optim.discriminator   one optimizer per player (jaxgen.optim)

Both players live in one TrainState: params = {"generator": ..., "discriminator": ...}, opt_state
likewise, and each player's non-trainable collections (BatchNorm statistics) in
state.model_state = {"generator": {"batch_stats": ...}, "discriminator": {...}}. One train_step
takes a discriminator step on a real and a fake batch, then a generator step with fresh z against
the updated discriminator (Goodfellow et al. 2014, Alg. 1 with k = 1). state.ema_params, when
config.train.ema_decay > 0, is an EMA of the generator's params, and sampling uses it.

To add a variant: a new loss is one entry in LOSSES; a new architecture is one entry in ARCHS.
"""
import math
from typing import Any, Callable, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxgen import optim
from jaxgen.gan.losses import LOSSES
from jaxgen.methods.base import Batch, ConfigError, Method
from jaxgen.models import dcgan
from jaxgen.nn.dtypes import parse_dtype
from jaxgen.state import TrainState, ema_decay, ema_init, ema_update, validate_ema




class Arch(NamedTuple):
  """A (generator, discriminator) family.

  Attributes:
    validate: config -> None; raises ConfigError for shapes/widths the family cannot build.
    build: config -> (generator, discriminator). The generator maps (z [B, z_dim], train) to images
      float32 [B, H, W, C] in [-1, 1]; the discriminator maps (images, train) to float32 [B].
  """
  validate: Callable[[ml_collections.ConfigDict], None]
  build: Callable[[ml_collections.ConfigDict], tuple[nn.Module, nn.Module]]


def _validate_dcgan(config: ml_collections.ConfigDict) -> None:
  size = config.data.image_size
  if size < 16 or 2 ** round(math.log2(size)) != size:
    raise ConfigError(
        f"DCGAN needs config.data.image_size to be a power of two >= 16 (its depth is "
        f"log2(image_size / 4) stride-2 stages from a 4x4 base); got {size}. Set data.image_size "
        f"to 16, 32, 64, ... (the data pipeline resizes images to it).")
  for name in ("gen_features", "disc_features"):
    if config.model[name] < 1:
      raise ConfigError(f"config.model.{name}={config.model[name]} must be >= 1 (e.g. 128, the paper's "
                        f"width, or 16 for a quick CPU run).")


def _build_dcgan(config: ml_collections.ConfigDict) -> tuple[nn.Module, nn.Module]:
  dtype = parse_dtype(config.model.dtype)
  return (dcgan.Generator(config.data.image_size, config.data.channels, config.model.gen_features,
                          dtype),
          dcgan.Discriminator(config.data.image_size, config.model.disc_features, dtype))


ARCHS: dict[str, Arch] = {"dcgan": Arch(_validate_dcgan, _build_dcgan)}



class GAN(Method):
  """Two-player adversarial training; see the module docstring for the config it reads."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    # Validate here too, so no partially built method exists for a bad config.
    self.validate()
    self.generator, self.discriminator = ARCHS[config.model.arch].build(config)
    self.loss = LOSSES[config.gan.loss]
    self.z_dim = config.model.z_dim
    self.optimizers = {
        player: optim.make_optimizer(config.optim[player], config.train.num_steps,
                                     where=f"config.optim.{player}")
        for player in ("generator", "discriminator")}

  def validate(self) -> None:
    c = self.config
    if c.model.arch not in ARCHS:
      raise ConfigError(f"Unknown config.model.arch={c.model.arch!r} for method 'gan'; "
                        f"use one of {sorted(ARCHS)}.")
    if c.gan.loss not in LOSSES:
      raise ConfigError(f"Unknown config.gan.loss={c.gan.loss!r}; use one of {sorted(LOSSES)}.")
    parse_dtype(c.model.dtype)
    if c.model.z_dim < 1:
      raise ConfigError(f"config.model.z_dim={c.model.z_dim} must be >= 1 (DCGAN uses 100).")
    if c.data.channels < 1:
      raise ConfigError(f"config.data.channels={c.data.channels} must be >= 1 (1 grey, 3 RGB).")
    validate_ema(c.train)
    for player in ("generator", "discriminator"):
      if player not in c.get("optim", {}):
        raise ConfigError(f"config.optim.{player} is missing: GANs take one optimizer config per "
                          f"player, e.g. config.optim.{player} = ConfigDict(dict(name='adam', "
                          f"lr=2e-4, b1=0.5)).")
      optim.validate_optimizer(c.optim[player], c.train.num_steps, where=f"config.optim.{player}")
    ARCHS[c.model.arch].validate(c)

  def init(self, rng: jax.Array, example_batch: Batch) -> TrainState:
    g_rng, d_rng, root = jax.random.split(rng, 3)
    _, h, w, c = example_batch["image"].shape
    g_vars = self.generator.init(g_rng, jnp.zeros((1, self.z_dim)), train=False)
    d_vars = self.discriminator.init(d_rng, jnp.zeros((1, h, w, c)), train=False)
    params = {"generator": g_vars.pop("params"), "discriminator": d_vars.pop("params")}
    opt_state = {p: self.optimizers[p].init(params[p]) for p in params}
    ema = ema_init(params["generator"], self.config.train)
    return TrainState.create(params=params, opt_state=opt_state, rng=root, ema_params=ema,
                             model_state={"generator": g_vars, "discriminator": d_vars})

  def _z(self, rng: jax.Array, num: int) -> jax.Array:
    return jax.random.normal(rng, (num, self.z_dim), jnp.float32)

  def _generate(self, params: Any, collections: dict, z: jax.Array, train: bool
                ) -> tuple[jax.Array, dict]:
    """Images [B, H, W, C] and the generator's updated collections (unchanged when not training)."""
    return self.generator.apply({"params": params, **collections}, z, train=train,
                                mutable=list(collections) if train else [])

  def _discriminate(self, params: Any, collections: dict, images: jax.Array
                    ) -> tuple[jax.Array, dict]:
    """D's outputs float32 [B] in training mode (batch statistics) and its updated collections."""
    return self.discriminator.apply({"params": params, **collections}, images, train=True,
                                    mutable=list(collections))

  def discriminator_step(self, state: TrainState, real: jax.Array, rng: jax.Array
                         ) -> tuple[TrainState, dict]:
    """One optimizer step of D on `real` [B, H, W, C] and B fakes from z ~ N(0, I) (key `rng`).

    Changes D's params, opt_state and collections, and G's collections (G runs in training mode
    to make the fakes, as in the reference implementations); never G's params. state.step is
    left to train_step."""
    params, ms = state.params, state.model_state
    fake, g_ms = self._generate(params["generator"], ms["generator"],
                                self._z(rng, real.shape[0]), train=True)

    def loss_fn(d_params):
      # Real and fake go through D as separate batches, so each BatchNorm normalises a pure batch
      # (as in the DCGAN reference code); mixing them would let D read the mix from the statistics.
      real_out, d_ms = self._discriminate(d_params, ms["discriminator"], real)
      fake_out, d_ms = self._discriminate(d_params, d_ms, fake)
      return self.loss.d_loss(real_out, fake_out), (real_out, fake_out, d_ms)

    (loss, (real_out, fake_out, d_ms)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params["discriminator"])
    updates, d_opt = self.optimizers["discriminator"].update(
        grads, state.opt_state["discriminator"], params["discriminator"])
    state = state.replace(
        params={**params, "discriminator": optax.apply_updates(params["discriminator"], updates)},
        opt_state={**state.opt_state, "discriminator": d_opt},
        model_state={"generator": g_ms, "discriminator": d_ms})
    thr = self.loss.threshold
    metrics = {"d_loss": loss,
               "d_real_acc": jnp.mean((real_out > thr).astype(jnp.float32)),
               "d_fake_acc": jnp.mean((fake_out < thr).astype(jnp.float32)),
               "d_real_logit": jnp.mean(real_out),
               "d_fake_logit": jnp.mean(fake_out)}
    return state, metrics

  def generator_step(self, state: TrainState, batch_size: int, rng: jax.Array
                     ) -> tuple[TrainState, dict]:
    """One optimizer step of G on `batch_size` fresh z (key `rng`) against the current D.

    Changes G's params, opt_state, collections and EMA; never anything of D. state.step is left to
    train_step."""
    params, ms = state.params, state.model_state
    z = self._z(rng, batch_size)

    def loss_fn(g_params):
      fake, g_ms = self._generate(g_params, ms["generator"], z, train=True)
      # D sees the fakes with batch statistics, as in its own step; the running statistics this
      # pass would write are dropped, so that G's step leaves D untouched.
      fake_out, _ = self._discriminate(params["discriminator"], ms["discriminator"], fake)
      return self.loss.g_loss(fake_out), g_ms

    (loss, g_ms), grads = jax.value_and_grad(loss_fn, has_aux=True)(params["generator"])
    updates, g_opt = self.optimizers["generator"].update(
        grads, state.opt_state["generator"], params["generator"])
    g_params = optax.apply_updates(params["generator"], updates)
    ema = state.ema_params
    if ema is not None:
      ema = ema_update(ema, g_params, ema_decay(self.config.train, state.step, batch_size))
    state = state.replace(
        params={**params, "generator": g_params},
        opt_state={**state.opt_state, "generator": g_opt},
        model_state={**ms, "generator": g_ms},
        ema_params=ema)
    return state, {"g_loss": loss}

  def train_step(self, state: TrainState, batch: Batch, rng: jax.Array) -> tuple[TrainState, dict]:
    """D step on batch["image"] [B, H, W, C] in [-1, 1] plus B fakes, then G step with fresh z.

    Metrics (float32 scalars): loss = d_loss + g_loss (so a NaN in either player shows), d_loss,
    g_loss, d_real_acc / d_fake_acc (fraction of reals called real / fakes called fake), and
    d_real_logit / d_fake_logit (mean D outputs), all from the D step except g_loss."""
    d_rng, g_rng = jax.random.split(rng)
    real = batch["image"]
    state, d_metrics = self.discriminator_step(state, real, d_rng)
    state, g_metrics = self.generator_step(state, real.shape[0], g_rng)
    metrics = {**d_metrics, **g_metrics, "loss": d_metrics["d_loss"] + g_metrics["g_loss"]}
    return state.replace(step=state.step + 1), metrics

  def sampling_params(self, state: TrainState) -> Any:
    """The EMA generator when there is one, else the trained generator."""
    return state.params["generator"] if state.ema_params is None else state.ema_params

  def sample(self, state: TrainState, rng: jax.Array, num: int, cond: Optional[Any] = None
             ) -> jax.Array:
    """`num` images float32 [num, H, W, C] in [-1, 1] from z ~ N(0, I), using the EMA generator
    when there is one and BatchNorm's running statistics (so a sample does not depend on the
    others drawn with it)."""
    if cond is not None:
      raise ValueError(f"config.model.arch={self.config.model.arch!r} is an unconditional GAN: "
                       f"sample() takes cond=None, got {type(cond).__name__}.")
    images, _ = self._generate(self.sampling_params(state), state.model_state["generator"], self._z(rng, num),
                               train=False)
    return images
