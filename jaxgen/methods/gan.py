"""Generative adversarial networks: the home of every GAN variant's training rule.

One `GAN` method serves all variants; a config picks the parts (defaults: `gan_defaults()`):
  config.model.arch     the (generator, discriminator) pair: ARCHS ("dcgan", "mlp", "sngan", "infogan")
  config.gan.loss       the adversarial loss: jaxgen.gan.losses.LOSSES ("minimax", "non_saturating",
                        "lsgan", "hinge", "wasserstein")
  config.gan.d_steps    k discriminator steps per generator step (Goodfellow et al. 2014, Alg. 1;
                        WGAN-GP's n_critic = 5)
  config.gan.gp_weight  WGAN-GP gradient penalty lambda (Gulrajani et al. 2017: 10; 0 = off)
  config.gan.r1_gamma / r1_every   R1 penalty gamma / 2 ||grad D(x_real)||^2 (Mescheder et al.
                        2018), lazily every r1_every D steps, then scaled by r1_every (StyleGAN2)
  config.gan.conditional, cond_d   labels into G (one-hot appended to z) and D ("concat" into its
                        input, Mirza & Osindero 2014; "projection", Miyato & Koyama 2018; "none")
  config.gan.ac_weight  AC-GAN's auxiliary classifier (Odena et al. 2017; 0 = off); G is
                        label-conditional, D predicts the class
  config.gan.info.*     InfoGAN codes (Chen et al. 2016): `categorical` values of one categorical
                        code, `continuous` U(-1, 1) codes appended to z, predicted by D's Q head
  config.optim.generator / config.optim.discriminator   one optimizer per player (jaxgen.optim)

Both players live in one TrainState: params = {"generator": ..., "discriminator": ...}, opt_state
likewise, and each player's non-trainable collections (BatchNorm statistics, spectral
normalisation's power-iteration vectors) in state.model_state = {"generator": {...},
"discriminator": {...}}. state.ema_params, when config.train.ema_decay > 0, is an EMA of the
generator's params, and sampling uses it.

One train_step: k discriminator steps, then a generator step with fresh z against the updated D.
With k > 1 each D step takes its own slice of the batch (rows i, i + k, i + 2k, ...), so
config.train.batch_size is k times the per-step batch: Alg. 1 of both papers samples a fresh real
minibatch for every critic iteration (reusing one would fit the critic to those images), and the
strided slices keep each device's share equal on a sharded batch. Fakes in D's steps use the real
rows' labels (so WGAN-GP interpolates pairs of one class); G's step draws uniform labels, as the
sampler.

Discriminators are `jaxgen.gan.heads.Discriminator(trunk)`: the architecture's trunk plus shared
heads (adversarial logit, projection, AC class logits, Q), so a variant is config, not a copy. The
"dcgan" architecture keeps its own logit layer (its param tree is unchanged) and so is
unconditional only.
"""
import math
from typing import Any, Callable, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxgen import optim
from jaxgen.gan import heads, losses
from jaxgen.gan.losses import LOSSES
from jaxgen.methods.base import Batch, ConfigError, Method, cycling_labels
from jaxgen.models import dcgan, gan_mlp, infogan, sngan
from jaxgen.nn.dtypes import parse_dtype
from jaxgen.state import TrainState, ema_decay, ema_init, ema_update, validate_ema

Z_PRIORS = ("normal", "uniform")


def gan_defaults(**overrides) -> ml_collections.ConfigDict:
  """config.gan with every key the method reads (configs written before a key existed get these
  values too). Keyword arguments override; `info` takes a dict of its keys."""
  c = ml_collections.ConfigDict()
  c.loss = "non_saturating"
  c.d_steps = 1
  c.gp_weight = 0.0
  c.r1_gamma = 0.0
  c.r1_every = 1
  c.conditional = False
  c.cond_d = "concat"
  c.ac_weight = 0.0
  c.info = ml_collections.ConfigDict()
  c.info.categorical = 0          # values of the categorical code (InfoGAN MNIST: 10; 0 = none)
  c.info.continuous = 0           # U(-1, 1) codes (InfoGAN MNIST: 2)
  c.info.cat_weight = 1.0         # lambda of the categorical term
  c.info.cont_weight = 1.0        # lambda of the continuous term
  c.info.fixed_std = True         # Q's continuous codes have unit variance (reference code)
  c.info.q_hidden = 128           # Q's hidden FC-BN-lReLU layer on D's trunk (0 = linear Q)
  c.info.traversal = 0            # > 0: samples are a latent-traversal grid with this many columns
  c.info.traversal_code = 0       # which continuous code the columns vary
  c.info.traversal_range = 1.0    # columns span [-range, range] (the paper shows 2: extrapolation)
  for k, v in overrides.items():
    if k == "info":
      c.info.update(v)
    else:
      c[k] = v
  return c


def _gan_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """config.gan filled in with gan_defaults() for the keys it lacks."""
  c = gan_defaults()
  given = config.get("gan", ml_collections.ConfigDict())
  for k in given.keys():
    if k == "info":
      c.info.update(given.info)
    elif k in c:
      c[k] = given[k]
    else:
      raise ConfigError(f"config.gan.{k} is not a GAN setting; known: {sorted(c.keys())}.")
  return c


# ---------------------------------------------------------------------------------- architectures

class Arch(NamedTuple):
  """A (generator, discriminator) family.

  Attributes:
    validate: config -> None; raises ConfigError for shapes/widths the family cannot build.
    build: config -> (generator, discriminator). The generator maps (z [B, z_in], train) to images
      float32 [B, H, W, C] in [-1, 1], z_in = z_dim plus any one-hot label and codes. With
      `trunk`, the discriminator is a trunk (images, train, cond) -> features [B, F] under the
      shared heads; else it maps (images, train) to logits float32 [B].
    trunk: whether build's discriminator is a heads trunk.
    d_batch_norm: D uses batch statistics (then input-gradient penalties are not per example).
  """
  validate: Callable[[ml_collections.ConfigDict], None]
  build: Callable[[ml_collections.ConfigDict], tuple[nn.Module, nn.Module]]
  trunk: bool = True
  d_batch_norm: bool = False


def _require(ok: bool, msg: str) -> None:
  if not ok:
    raise ConfigError(msg)


def _validate_widths(config, names: tuple[str, ...]) -> None:
  for name in names:
    v = config.model.get(name)
    _require(isinstance(v, int) and not isinstance(v, bool) and v >= 1,
             f"config.model.{name}={v!r} must be an integer >= 1 (see the architecture's docstring "
             f"for the paper's value).")


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


def _validate_mlp(config: ml_collections.ConfigDict) -> None:
  m = config.model
  for name in ("gen_hidden", "disc_hidden"):
    v = tuple(m.get(name, ()))
    _require(len(v) >= 1 and all(isinstance(w, int) and w >= 1 for w in v),
             f"config.model.{name}={v!r} must be a non-empty tuple of widths >= 1 (Goodfellow et al.: "
             f"gen_hidden=(1200, 1200), disc_hidden=(240, 240)).")
  _require(isinstance(m.get("maxout_pieces"), int) and m.maxout_pieces >= 1,
           f"config.model.maxout_pieces={m.get('maxout_pieces')!r} must be an integer >= 1 (paper: 5; "
           f"1 = LeakyReLU layers).")
  for name in ("input_dropout", "hidden_dropout"):
    _require(0.0 <= m.get(name, -1.0) < 1.0, f"config.model.{name}={m.get(name)!r} must be in [0, 1) "
             f"(paper: input 0.2, hidden 0.5).")


def _build_mlp(config: ml_collections.ConfigDict) -> tuple[nn.Module, nn.Module]:
  m, d = config.model, config.data
  dtype = parse_dtype(m.dtype)
  return (gan_mlp.Generator((d.image_size, d.image_size, d.channels), tuple(m.gen_hidden), dtype),
          gan_mlp.DiscriminatorTrunk(tuple(m.disc_hidden), m.maxout_pieces, m.input_dropout,
                                     m.hidden_dropout, dtype))


def _validate_sngan(config: ml_collections.ConfigDict) -> None:
  size = config.data.image_size
  _require(size >= 8 and size % 8 == 0,
           f"The SN-GAN standard CNN needs config.data.image_size to be a multiple of 8 (three "
           f"stride-2 stages; 32 for CIFAR-10, 48 for STL-10); got {size}.")
  _validate_widths(config, ("gen_features", "disc_features"))


def _build_sngan(config: ml_collections.ConfigDict) -> tuple[nn.Module, nn.Module]:
  m, d = config.model, config.data
  dtype = parse_dtype(m.dtype)
  return (sngan.Generator(d.image_size, d.channels, m.gen_features, dtype),
          sngan.DiscriminatorTrunk(m.disc_features, bool(m.get("spectral_norm", True)), dtype))


def _validate_infogan(config: ml_collections.ConfigDict) -> None:
  size = config.data.image_size
  _require(size >= 4 and size % 4 == 0,
           f"The InfoGAN MNIST networks need config.data.image_size to be a multiple of 4 (two "
           f"stride-2 stages; 28 for MNIST); got {size}.")
  _validate_widths(config, ("gen_features", "disc_features", "hidden"))


def _build_infogan(config: ml_collections.ConfigDict) -> tuple[nn.Module, nn.Module]:
  m, d = config.model, config.data
  dtype = parse_dtype(m.dtype)
  return (infogan.Generator(d.image_size, d.channels, m.hidden, m.gen_features, dtype),
          infogan.DiscriminatorTrunk(m.disc_features, m.hidden, dtype))


ARCHS: dict[str, Arch] = {
    "dcgan": Arch(_validate_dcgan, _build_dcgan, trunk=False, d_batch_norm=True),
    "mlp": Arch(_validate_mlp, _build_mlp),
    "sngan": Arch(_validate_sngan, _build_sngan),
    "infogan": Arch(_validate_infogan, _build_infogan, d_batch_norm=True),
}


def _nanmean(x: jax.Array) -> jax.Array:
  """Mean over the leading axis of the finite entries (NaN marks a step that computed nothing)."""
  ok = jnp.isfinite(x)
  n = jnp.sum(ok, axis=0)
  return jnp.where(n > 0, jnp.sum(jnp.where(ok, x, 0.0), axis=0) / jnp.maximum(n, 1), jnp.nan)


class GAN(Method):
  """Two-player adversarial training; see the module docstring for the config it reads."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    # Validate here too, so no partially built method exists for a bad config.
    self.validate()
    g = self.gan = _gan_config(config)
    arch = ARCHS[config.model.arch]
    self.generator, d = arch.build(config)
    self.num_classes = int(config.data.num_classes)
    # G takes labels for a conditional GAN and for AC-GAN; D takes them only for the former.
    self.labelled = bool(g.conditional) or g.ac_weight > 0
    self.d_label = bool(g.conditional) and g.cond_d != "none"
    self.info = g.info.categorical > 0 or g.info.continuous > 0
    if arch.trunk:
      d = heads.Discriminator(
          d, num_classes=self.num_classes, cond_d=g.cond_d if self.d_label else "none",
          aux_classes=self.num_classes if g.ac_weight > 0 else 0,
          q_categorical=g.info.categorical, q_continuous=g.info.continuous,
          q_hidden=g.info.q_hidden, q_fixed_std=bool(g.info.fixed_std),
          spectral=bool(config.model.get("spectral_norm", False)))
    self.discriminator, self.heads = d, arch.trunk
    self.loss = LOSSES[g.loss]
    self.z_dim = config.model.z_dim
    self.z_prior = config.model.get("z_prior", "normal")
    self.optimizers = {
        player: optim.make_optimizer(config.optim[player], config.train.num_steps,
                                     where=f"config.optim.{player}")
        for player in ("generator", "discriminator")}

  # ------------------------------------------------------------------------------- validation

  def validate(self) -> None:
    c = self.config
    if c.model.arch not in ARCHS:
      raise ConfigError(f"Unknown config.model.arch={c.model.arch!r} for method 'gan'; "
                        f"use one of {sorted(ARCHS)}.")
    g = _gan_config(c)
    if g.loss not in LOSSES:
      raise ConfigError(f"Unknown config.gan.loss={g.loss!r}; use one of {sorted(LOSSES)}.")
    parse_dtype(c.model.dtype)
    if c.model.z_dim < 1:
      raise ConfigError(f"config.model.z_dim={c.model.z_dim} must be >= 1 (DCGAN uses 100).")
    if c.model.get("z_prior", "normal") not in Z_PRIORS:
      raise ConfigError(f"config.model.z_prior={c.model.z_prior!r}; use one of {Z_PRIORS} "
                        f"('uniform' is U(-1, 1), as the InfoGAN reference code).")
    if c.data.channels < 1:
      raise ConfigError(f"config.data.channels={c.data.channels} must be >= 1 (1 grey, 3 RGB).")
    validate_ema(c.train)
    for player in ("generator", "discriminator"):
      if player not in c.get("optim", {}):
        raise ConfigError(f"config.optim.{player} is missing: GANs take one optimizer config per "
                          f"player, e.g. config.optim.{player} = ConfigDict(dict(name='adam', "
                          f"lr=2e-4, b1=0.5)).")
      optim.validate_optimizer(c.optim[player], c.train.num_steps, where=f"config.optim.{player}")
    arch = ARCHS[c.model.arch]
    arch.validate(c)
    self._validate_gan(g, arch)

  def _validate_gan(self, g: ml_collections.ConfigDict, arch: Arch) -> None:
    c = self.config
    k = g.d_steps
    _require(isinstance(k, int) and not isinstance(k, bool) and k >= 1,
             f"config.gan.d_steps={k!r} must be an integer >= 1 (1: Goodfellow et al.'s k = 1; "
             f"WGAN-GP: 5).")
    _require(c.train.batch_size % k == 0,
             f"config.train.batch_size={c.train.batch_size} must be a multiple of config.gan.d_steps="
             f"{k}: each D step takes its own batch_size / d_steps rows; e.g. batch_size="
             f"{k * max(1, c.train.batch_size // k)}.")
    for name in ("gp_weight", "r1_gamma", "ac_weight"):
      _require(g[name] >= 0, f"config.gan.{name}={g[name]!r} must be >= 0 (0 = off).")
    _require(isinstance(g.r1_every, int) and g.r1_every >= 1,
             f"config.gan.r1_every={g.r1_every!r} must be an integer >= 1 (1 = every D step; "
             f"StyleGAN2's lazy R1: 16).")
    if (g.gp_weight > 0 or g.r1_gamma > 0) and arch.d_batch_norm:
      raise ConfigError(
          f"config.gan.gp_weight={g.gp_weight} / r1_gamma={g.r1_gamma} with config.model.arch="
          f"{c.model.arch!r}: its discriminator uses BatchNorm, so one example's input gradient "
          f"depends on the others and the penalty is not the paper's. Use arch 'sngan' or 'mlp' (no "
          f"batch statistics in D; Gulrajani et al. drop critic BatchNorm for this reason).")
    if g.loss == "wasserstein" and g.gp_weight == 0 and not c.model.get("spectral_norm", False):
      raise ConfigError(
          "config.gan.loss='wasserstein' needs a Lipschitz critic: set config.gan.gp_weight (WGAN-GP: "
          "10) or config.model.spectral_norm=True (weight clipping is not provided).")
    if g.cond_d not in heads.COND_D:
      raise ConfigError(f"config.gan.cond_d={g.cond_d!r}; use one of {heads.COND_D}.")
    labelled = g.conditional or g.ac_weight > 0
    if labelled and c.data.num_classes <= 0:
      raise ConfigError(
          f"config.gan.conditional={g.conditional} / ac_weight={g.ac_weight} need labels, but "
          f"config.data.num_classes={c.data.num_classes}: set it (e.g. 10 for MNIST / CIFAR-10) so "
          f"batches carry 'label'.")
    info = g.info
    for name in ("categorical", "continuous"):
      _require(isinstance(info[name], int) and info[name] >= 0,
               f"config.gan.info.{name}={info[name]!r} must be an integer >= 0 (InfoGAN MNIST: "
               f"categorical=10, continuous=2).")
    _require(info.categorical != 1, "config.gan.info.categorical=1 is a constant code; use 0 (none) "
             "or >= 2 (InfoGAN MNIST: 10).")
    for name in ("cat_weight", "cont_weight"):
      _require(info[name] >= 0, f"config.gan.info.{name}={info[name]!r} must be >= 0.")
    uses_info = info.categorical > 0 or info.continuous > 0
    if not arch.trunk and (g.conditional or g.ac_weight > 0 or uses_info
                           or c.model.get("spectral_norm", False)):
      raise ConfigError(
          f"config.model.arch={c.model.arch!r} ends in its own logit layer, so it takes no labels, "
          f"auxiliary heads (AC-GAN, InfoGAN's Q) or spectral normalisation; use a trunk "
          f"architecture: {sorted(a for a, v in ARCHS.items() if v.trunk)}.")
    if info.traversal:
      _require(isinstance(info.traversal, int) and info.traversal >= 2,
               f"config.gan.info.traversal={info.traversal!r} must be 0 (random codes) or the number "
               f"of grid columns >= 2 (e.g. 10).")
      _require(info.categorical >= 2 and 0 <= info.traversal_code < info.continuous,
               f"config.gan.info.traversal={info.traversal} draws rows of the categorical code and "
               f"columns of continuous code traversal_code={info.traversal_code}: it needs "
               f"info.categorical >= 2 and 0 <= traversal_code < info.continuous="
               f"{info.continuous}.")

  # --------------------------------------------------------------------------- building blocks

  @property
  def d_steps(self) -> int:
    return self.gan.d_steps

  def z_in_dim(self) -> int:
    """G's input width: z_dim + num_classes (labelled) + categorical + continuous codes."""
    return (self.z_dim + (self.num_classes if self.labelled else 0)
            + self.gan.info.categorical + self.gan.info.continuous)

  def _z(self, rng: jax.Array, num: int) -> jax.Array:
    if self.z_prior == "uniform":
      return jax.random.uniform(rng, (num, self.z_dim), jnp.float32, -1.0, 1.0)
    return jax.random.normal(rng, (num, self.z_dim), jnp.float32)

  def _codes(self, rng: jax.Array, num: int) -> dict:
    """InfoGAN codes from their priors: "code_cat" int32 [num] uniform, "code_cont" float32
    [num, continuous] U(-1, 1). {} without codes."""
    info = self.gan.info
    if not self.info:
      return {}
    c_rng, u_rng = jax.random.split(rng)
    return {"code_cat": jax.random.randint(c_rng, (num,), 0, max(info.categorical, 1)),
            "code_cont": jax.random.uniform(u_rng, (num, info.continuous), jnp.float32, -1.0, 1.0)}

  def _latent(self, z: jax.Array, labels: Optional[jax.Array], codes: dict) -> jax.Array:
    """G's input [B, z_in]: z, then one-hot labels, one-hot categorical code, continuous codes.
    (A one-hot input to G's first linear layer is a learned label embedding added there.)"""
    parts = [z]
    if self.labelled:
      parts.append(jax.nn.one_hot(labels, self.num_classes, dtype=jnp.float32))
    if self.gan.info.categorical:
      parts.append(jax.nn.one_hot(codes["code_cat"], self.gan.info.categorical, dtype=jnp.float32))
    if self.gan.info.continuous:
      parts.append(codes["code_cont"].astype(jnp.float32))
    return jnp.concatenate(parts, axis=-1)

  def _random_labels(self, rng: jax.Array, num: int) -> Optional[jax.Array]:
    return jax.random.randint(rng, (num,), 0, self.num_classes) if self.labelled else None

  def _generate(self, params: Any, collections: dict, z: jax.Array, train: bool
                ) -> tuple[jax.Array, dict]:
    """Images [B, H, W, C] from G's input z [B, z_in] and G's updated collections (unchanged when
    not training)."""
    return self.generator.apply({"params": params, **collections}, z, train=train,
                                mutable=list(collections) if train else [])

  def _discriminate(self, params: Any, collections: dict, images: jax.Array,
                    labels: Optional[jax.Array] = None, rng: Optional[jax.Array] = None,
                    q: bool = False, mutable: bool = True) -> tuple[dict, dict]:
    """D's outputs in training mode (batch statistics, dropout with key `rng`, one power
    iteration): a dict with "logit" float32 [B] and any head outputs (see jaxgen.gan.heads), and
    its updated collections (`collections` itself when not `mutable`)."""
    rngs = {"dropout": rng} if rng is not None else {}
    variables = {"params": params, **collections}
    kwargs = dict(label=labels if self.d_label else None, q=q) if self.heads else {}
    if mutable:
      out, new = self.discriminator.apply(variables, images, train=True, rngs=rngs,
                                          mutable=list(collections), **kwargs)
    else:
      out, new = self.discriminator.apply(variables, images, train=True, rngs=rngs, **kwargs), collections
    return (out if self.heads else {"logit": out}), new

  def _info_terms(self, out: dict, codes: dict) -> tuple[jax.Array, dict]:
    """InfoGAN's lambda-weighted -L_I (Chen et al. 2016, Eq. 5 without H(c)) from Q's outputs on
    fakes, and its metrics: Q's categorical accuracy and the bound L_I per code type (nats)."""
    info = self.gan.info
    loss, metrics = jnp.float32(0.0), {}
    if info.categorical:
      nll = losses.class_nll(out["q_cat_logits"], codes["code_cat"])
      loss += info.cat_weight * nll
      metrics["info_cat_acc"] = jnp.mean(
          (jnp.argmax(out["q_cat_logits"], -1) == codes["code_cat"]).astype(jnp.float32))
      metrics["info_mi_cat"] = losses.categorical_entropy(info.categorical) - nll
    if info.continuous:
      nll = losses.continuous_code_nll(out["q_cont_mean"], out["q_cont_logvar"], codes["code_cont"])
      loss += info.cont_weight * nll
      metrics["info_mi_cont"] = info.continuous * losses.uniform_entropy() - nll
    return loss, metrics

  # ------------------------------------------------------------------------------------- state

  def init(self, rng: jax.Array, example_batch: Batch) -> TrainState:
    g_rng, d_rng, root = jax.random.split(rng, 3)
    _, h, w, c = example_batch["image"].shape
    g_vars = self.generator.init(g_rng, jnp.zeros((1, self.z_in_dim())), train=False)
    x = jnp.zeros((1, h, w, c))
    if self.heads:
      d_vars = self.discriminator.init(d_rng, x, train=False, label=jnp.zeros((1,), jnp.int32),
                                       q=self.info)
    else:
      d_vars = self.discriminator.init(d_rng, x, train=False)
    params = {"generator": g_vars.pop("params"), "discriminator": d_vars.pop("params")}
    opt_state = {p: self.optimizers[p].init(params[p]) for p in params}
    ema = ema_init(params["generator"], self.config.train)
    return TrainState.create(params=params, opt_state=opt_state, rng=root, ema_params=ema,
                             model_state={"generator": g_vars, "discriminator": d_vars})

  # -------------------------------------------------------------------------------- the steps

  def discriminator_step(self, state: TrainState, real: jax.Array, rng: jax.Array,
                         labels: Optional[jax.Array] = None,
                         d_index: Optional[jax.Array] = None) -> tuple[TrainState, dict]:
    """One optimizer step of D on `real` [B, H, W, C] (with their int32 `labels` [B] when the
    GAN is labelled) and B fakes from fresh z (key `rng`), labelled like the reals.

    Adds to the adversarial loss: the gradient penalty, R1 when this is a lazy-R1 step (`d_index`,
    the number of D steps taken before this one, int32; default state.step), AC-GAN's class NLL on
    reals and fakes, InfoGAN's -L_I on the fakes (Q's params are D's). Changes D's params,
    opt_state and collections, and G's collections (G runs in training mode to make the fakes, as
    in the reference implementations); never G's params. state.step is left to train_step."""
    g = self.gan
    params, ms = state.params, state.model_state
    z_rng, code_rng, gp_rng, drop_real, drop_fake, drop_reg = jax.random.split(rng, 6)
    num = real.shape[0]
    if self.labelled and labels is None:
      raise ValueError("This GAN is label-conditional: discriminator_step needs the reals' labels.")
    codes = self._codes(code_rng, num)
    fake, g_ms = self._generate(params["generator"], ms["generator"],
                                self._latent(self._z(z_rng, num), labels, codes), train=True)
    fake = jax.lax.stop_gradient(fake)
    d_index = state.step if d_index is None else d_index
    lazy_r1 = (d_index % g.r1_every) == 0

    def loss_fn(d_params):
      # Real and fake go through D as separate batches, so each BatchNorm normalises a pure batch
      # (as in the DCGAN reference code); mixing them would let D read the mix from the statistics.
      real_out, d_ms = self._discriminate(d_params, ms["discriminator"], real, labels, drop_real)
      fake_out, d_ms = self._discriminate(d_params, d_ms, fake, labels, drop_fake, q=self.info)
      adv = self.loss.d_loss(real_out["logit"], fake_out["logit"])
      loss, aux = adv, {}
      # Penalties see D as a function of its input alone: these passes write no collections.
      d_fn = lambda x: self._discriminate(d_params, d_ms, x, labels, drop_reg, mutable=False)[0]["logit"]  # noqa: E731
      if g.gp_weight > 0:
        aux["gp"] = losses.gradient_penalty(d_fn, real, fake, gp_rng)
        loss += g.gp_weight * aux["gp"]
      if g.r1_gamma > 0 and g.r1_every == 1:
        aux["r1"] = losses.r1_penalty(d_fn, real)
        loss += 0.5 * g.r1_gamma * aux["r1"]
      elif g.r1_gamma > 0:
        r1 = jax.lax.cond(lazy_r1, lambda: losses.r1_penalty(d_fn, real), lambda: jnp.float32(0.0))
        # Lazy regularisation (Karras et al. 2020): every r1_every steps, scaled by r1_every.
        loss += jnp.where(lazy_r1, 0.5 * g.r1_gamma * g.r1_every * r1, 0.0)
        aux["r1"] = jnp.where(lazy_r1, r1, jnp.nan)
      if g.ac_weight > 0:
        ac_real = losses.class_nll(real_out["class_logits"], labels)
        ac_fake = losses.class_nll(fake_out["class_logits"], labels)
        loss += g.ac_weight * (ac_real + ac_fake)
        aux["ac_real_acc"] = jnp.mean((jnp.argmax(real_out["class_logits"], -1) == labels).astype(jnp.float32))
        aux["ac_fake_acc"] = jnp.mean((jnp.argmax(fake_out["class_logits"], -1) == labels).astype(jnp.float32))
        aux["ac_nll"] = ac_real + ac_fake
      if self.info:
        info_loss, info_metrics = self._info_terms(fake_out, codes)
        loss += info_loss
        aux |= {f"d_{k}": v for k, v in info_metrics.items()}
      return loss, (real_out["logit"], fake_out["logit"], adv, aux, d_ms)

    (loss, (real_out, fake_out, adv, aux, d_ms)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
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
    if aux:
      metrics |= {"d_adv_loss": adv, **aux}
    return state, metrics

  def generator_step(self, state: TrainState, batch_size: int, rng: jax.Array
                     ) -> tuple[TrainState, dict]:
    """One optimizer step of G on `batch_size` fresh z, uniform labels and codes (key `rng`)
    against the current D: the adversarial loss, plus AC-GAN's class NLL on the fakes (G maximises
    L_C too) and InfoGAN's -L_I.

    Changes G's params, opt_state, collections and EMA; never anything of D. state.step is left to
    train_step."""
    g = self.gan
    params, ms = state.params, state.model_state
    z_rng, y_rng, code_rng, drop_rng = jax.random.split(rng, 4)
    labels = self._random_labels(y_rng, batch_size)
    codes = self._codes(code_rng, batch_size)
    z = self._latent(self._z(z_rng, batch_size), labels, codes)

    def loss_fn(g_params):
      fake, g_ms = self._generate(g_params, ms["generator"], z, train=True)
      # D sees the fakes with batch statistics, as in its own step; the collections this pass
      # would write (running statistics, power iterations) are dropped, so that G's step leaves D
      # untouched.
      out, _ = self._discriminate(params["discriminator"], ms["discriminator"], fake, labels,
                                  drop_rng, q=self.info)
      adv = self.loss.g_loss(out["logit"])
      loss, aux = adv, {}
      if g.ac_weight > 0:
        aux["g_ac_nll"] = losses.class_nll(out["class_logits"], labels)
        loss += g.ac_weight * aux["g_ac_nll"]
      if self.info:
        info_loss, info_metrics = self._info_terms(out, codes)
        loss += info_loss
        aux |= {f"g_{k}": v for k, v in info_metrics.items()}
      return loss, (g_ms, adv, aux)

    (loss, (g_ms, adv, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params["generator"])
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
    metrics = {"g_loss": loss}
    if aux:
      metrics |= {"g_adv_loss": adv, **aux}
    return state, metrics

  def train_step(self, state: TrainState, batch: Batch, rng: jax.Array) -> tuple[TrainState, dict]:
    """k = config.gan.d_steps D steps, each on its own slice of batch["image"] [k B, H, W, C] in
    [-1, 1] (rows i::k) plus B fakes, then a G step with B fresh z.

    Metrics (float32 scalars): loss = d_loss + g_loss (so a NaN in either player shows), d_loss,
    g_loss, d_real_acc / d_fake_acc (fraction of reals called real / fakes called fake), and
    d_real_logit / d_fake_logit (mean D outputs), averaged over the D steps; with regularisers or
    heads also d_adv_loss / g_adv_loss (the adversarial parts), gp, r1 (NaN on steps without lazy
    R1), ac_* (AC-GAN accuracies and NLLs), d_info_* / g_info_* (Q's accuracy and L_I bounds)."""
    d_rng, g_rng = jax.random.split(rng)
    real, labels = batch["image"], batch.get("label") if self.labelled else None
    k = self.d_steps
    if k == 1:
      state, d_metrics = self.discriminator_step(state, real, d_rng, labels)
    else:
      # Unrolled: XLA:CPU runs a lax.scan of these steps ~4x slower than the straight-line code.
      steps = []
      for i, key in enumerate(jax.random.split(d_rng, k)):
        state, m = self.discriminator_step(state, real[i::k], key,
                                           None if labels is None else labels[i::k],
                                           d_index=state.step * k + i)
        steps.append(m)
      d_metrics = {name: _nanmean(jnp.stack([m[name] for m in steps])) for name in steps[0]}
    state, g_metrics = self.generator_step(state, real.shape[0] // k, g_rng)
    metrics = {**d_metrics, **g_metrics, "loss": d_metrics["d_loss"] + g_metrics["g_loss"]}
    return state.replace(step=state.step + 1), metrics

  # ---------------------------------------------------------------------------------- sampling

  def sampling_params(self, state: TrainState) -> Any:
    """The EMA generator when there is one, else the trained generator."""
    return state.params["generator"] if state.ema_params is None else state.ema_params

  @property
  def cond_keys(self) -> tuple[str, ...]:
    keys = ("label",) if self.labelled else ()
    return keys + (("code_cat", "code_cont") if self.info and self.gan.info.traversal else ())

  def traversal_codes(self, num: int) -> dict:
    """InfoGAN's latent-traversal layout for `num` samples, as host numpy: sample i is row
    (i // K) % categorical, column i % K of a grid with K = config.gan.info.traversal columns;
    "code_cat" int32 [num] is the row, "code_cont" float32 [num, continuous] is 0 except code
    traversal_code, which runs over linspace(-range, range, K) along the columns. `sample` shares
    one z across each categorical x K block, so a grid of 100 (10 x 10) samples shows one z."""
    info = self.gan.info
    i = np.arange(num)
    cont = np.zeros((num, info.continuous), np.float32)
    cont[:, info.traversal_code] = np.linspace(-info.traversal_range, info.traversal_range,
                                               info.traversal, dtype=np.float32)[i % info.traversal]
    return {"code_cat": ((i // info.traversal) % info.categorical).astype(np.int32), "code_cont": cont}

  def default_cond(self, num: int) -> Optional[dict]:
    """Labels cycling through the classes (a 10-wide grid has one class per column) for labelled
    GANs; InfoGAN's traversal codes when config.gan.info.traversal > 0; else None."""
    cond = {}
    if self.labelled:
      cond["label"] = cycling_labels(num, self.num_classes)
    if self.info and self.gan.info.traversal:
      cond |= self.traversal_codes(num)
    return cond or None

  def sample(self, state: TrainState, rng: jax.Array, num: int, cond: Optional[Any] = None
             ) -> jax.Array:
    """`num` images float32 [num, H, W, C] in [-1, 1] from z (config.model.z_prior), using the EMA
    generator when there is one and BatchNorm's running statistics (so a sample does not depend on
    the others drawn with it). cond: {"label": int32 [num]} for labelled GANs; InfoGAN with
    info.traversal: {"code_cat", "code_cont"} (see traversal_codes), else its codes are drawn from
    their priors. None = default_cond(num)."""
    if not self.cond_keys and cond is not None:
      raise ValueError(f"config.model.arch={self.config.model.arch!r} is an unconditional GAN: "
                       f"sample() takes cond=None, got {type(cond).__name__}.")
    if self.cond_keys and cond is None:
      cond = jax.tree.map(jnp.asarray, self.default_cond(num))
    z_rng, code_rng = jax.random.split(rng)
    labels = jnp.asarray(cond["label"], jnp.int32) if self.labelled else None
    if self.info and self.gan.info.traversal:
      codes = {"code_cat": jnp.asarray(cond["code_cat"], jnp.int32),
               "code_cont": jnp.asarray(cond["code_cont"], jnp.float32)}
      block = self.gan.info.categorical * self.gan.info.traversal
      z = self._z(z_rng, -(-num // block))[jnp.arange(num) // block]
    else:
      codes = self._codes(code_rng, num)
      z = self._z(z_rng, num)
    images, _ = self._generate(self.sampling_params(state), state.model_state["generator"],
                               self._latent(z, labels, codes), train=False)
    return images

  def q_predict(self, state: TrainState, images: jax.Array, labels: Optional[jax.Array] = None
                ) -> dict:
    """D's head outputs on images [B, H, W, C] in eval mode (running statistics), e.g. InfoGAN's
    "q_cat_logits" [B, categorical] or AC-GAN's "class_logits"; `labels` int32 [B] for a D that
    is label-conditional."""
    if not self.heads:
      raise ValueError(f"config.model.arch={self.config.model.arch!r} has no heads.")
    return self.discriminator.apply(
        {"params": state.params["discriminator"], **state.model_state["discriminator"]}, images,
        train=False, label=labels if self.d_label else None, q=self.info)
