"""Super-resolution: SRResNet (MSE) and SRGAN (VGG content loss + adversarial loss), Ledig et al.
2017 (arXiv:1609.04802).

Batches hold the high-resolution crop "image" [B, S, S, C] and its bicubic downsampling "low_res"
[B, S/f, S/f, C], both in [-1, 1], made by the data pipeline (config.data.random_crop = S and
config.data.degrade = dict(kind="bicubic", factor=f)). The generator maps low_res -> image.

Config (besides data / train / optim):
  config.model.features, num_blocks      SRResNet's width (64) and residual blocks (16)
  config.model.disc_features, disc_dense the discriminator's first width (64) and dense layer (1024)
  config.model.dtype                     compute dtype
  config.srgan.content      "mse": pixel MSE (SRResNet-MSE, SRGAN-MSE), or "vgg": MSE of VGG-16
                            features at config.srgan.vgg_layer, times config.srgan.vgg_scale
  config.srgan.vgg_layer    a jaxgen.models.vgg.LAYERS name; default "relu5_3"
  config.srgan.vgg_scale    the paper rescales its VGG loss "by a factor of 1/12.75" on the features,
                            i.e. the feature MSE by 1/12.75**2 ~= 0.00615 (the default)
  config.srgan.adversarial_weight   0 = no discriminator (SRResNet); the paper's SRGAN: 1e-3
  config.srgan.loss         the adversarial loss, jaxgen.gan.losses.LOSSES (the paper's:
                            "non_saturating", -log D(G(x)) for the generator)
  config.optim.generator / .discriminator (the latter only with adversarial_weight > 0)
  config.pretrained.vgg     the frozen VGG-16 (content="vgg"): dict(file="fetch", converter="vgg16")
  config.pretrained.generator  optional: SRGAN starts from a trained SRResNet run,
                            dict(workdir=RUN, path="generator", frozen=False, into="generator")

The paper's VGG is VGG-19 (phi_5,4 = the 4th conv of block 5, after its ReLU, before the last
pool); VGG-19's weights cannot be had offline here, so the content loss uses VGG-16's deepest
comparable feature, relu5_3 (the 3rd and last conv of block 5, after its ReLU, before pool5; phi_2,2
is "relu2_2" in both networks).

One train_step: G's forward once; with a discriminator, D's step on (image, stop_gradient(SR)),
then G's step on content + adversarial_weight * adversarial loss against the updated D (the
PyTorch reference order); G's gradient is pulled back through that one forward pass. BatchNorm
running statistics of both players live in state.model_state; sampling uses them (train=False).
"""
import math
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxgen import optim
from jaxgen.gan.losses import LOSSES
from jaxgen.methods.base import Batch, ConfigError, Method
from jaxgen.models import srgan as models
from jaxgen.models import vgg
from jaxgen.nn.dtypes import parse_dtype
from jaxgen.state import TrainState, ema_decay, ema_init, ema_update, validate_ema

CONTENTS = ("mse", "vgg")


def psnr_from_mse(mse: jax.Array) -> jax.Array:
  """PSNR in dB of images in [-1, 1] (peak-to-peak 2) from their mean squared error."""
  return 10.0 * jnp.log10(4.0 / jnp.maximum(mse, 1e-12))


class SRGAN(Method):
  """SRResNet / SRGAN; see the module docstring for the config it reads."""
  cond_keys = ("low_res",)

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    self.validate()
    c, dtype = config, parse_dtype(config.model.dtype)
    self.factor = c.data.degrade.factor
    self.generator = models.SRResNet(c.data.channels, self.factor, c.model.features,
                                     c.model.num_blocks, dtype)
    self.discriminator = models.Discriminator(c.model.disc_features, c.model.disc_dense, dtype)
    self.vgg = vgg.VGG16(outputs=(c.srgan.vgg_layer,), dtype=dtype)
    self.loss = LOSSES[c.srgan.loss]
    self.players = ("generator", "discriminator") if self.adversarial else ("generator",)
    self.optimizers = {p: optim.make_optimizer(c.optim[p], c.train.num_steps, where=f"config.optim.{p}")
                       for p in self.players}

  @property
  def adversarial(self) -> bool:
    return self.config.srgan.adversarial_weight > 0

  def validate(self) -> None:
    c = self.config
    degrade = c.data.get("degrade") or {}
    factor = degrade.get("factor", 0)
    if degrade.get("kind", "") != "bicubic":
      raise ConfigError(f"config.data.degrade.kind={degrade.get('kind', '')!r}: super-resolution "
                        "trains on (low_res, image) pairs; set config.data.degrade.kind='bicubic' "
                        "(and config.data.degrade.factor=4, the paper's).")
    if not isinstance(factor, int) or factor < 2 or factor & (factor - 1):
      raise ConfigError(f"config.data.degrade.factor={factor!r} must be a power of two >= 2: SRResNet "
                        "upsamples with log2(factor) sub-pixel x2 stages (the paper: 4).")
    side = c.data.get("random_crop", 0) or c.data.image_size
    s = c.srgan
    if s.content not in CONTENTS:
      raise ConfigError(f"config.srgan.content={s.content!r} is unknown; use one of {CONTENTS} "
                        "('mse' for SRResNet, 'vgg' for SRGAN's VGG content loss).")
    if s.content == "vgg":
      if s.vgg_layer not in vgg.LAYERS:
        raise ConfigError(f"config.srgan.vgg_layer={s.vgg_layer!r} is not a VGG-16 feature; use "
                          f"one of {vgg.LAYERS} (e.g. 'relu5_3', or 'relu2_2' for SRGAN-VGG22).")
      if c.data.channels != 3:
        raise ConfigError(f"config.srgan.content='vgg' needs RGB images (VGG-16 is an ImageNet RGB "
                          f"network) but config.data.channels={c.data.channels}; set it to 3 or "
                          "use content='mse'.")
      if not s.vgg_scale > 0:
        raise ConfigError(f"config.srgan.vgg_scale={s.vgg_scale!r} must be > 0 (the paper: "
                          "1 / 12.75**2).")
    w = s.adversarial_weight
    if not (isinstance(w, (int, float)) and math.isfinite(w) and w >= 0):
      raise ConfigError(f"config.srgan.adversarial_weight={w!r} must be a finite number >= 0 (0 = "
                        "SRResNet, no discriminator; the paper's SRGAN: 1e-3).")
    if s.loss not in LOSSES:
      raise ConfigError(f"config.srgan.loss={s.loss!r} is unknown; use one of {sorted(LOSSES)}.")
    if w > 0 and side % 16:
      raise ConfigError(f"The SRGAN discriminator needs a high-resolution side divisible by 16 (four "
                        f"stride-2 convs, then a dense layer), got {side} (config.data.random_crop "
                        "or config.data.image_size); use e.g. 96 (the paper's) or 32.")
    for key in ("features", "disc_features", "disc_dense"):
      if c.model[key] < 1:
        raise ConfigError(f"config.model.{key}={c.model[key]} must be >= 1 (the paper: "
                          f"{dict(features=64, disc_features=64, disc_dense=1024)[key]}).")
    if c.model.num_blocks < 0:
      raise ConfigError(f"config.model.num_blocks={c.model.num_blocks} must be >= 0 (the paper: 16).")
    parse_dtype(c.model.dtype)
    validate_ema(c.train)
    for player in ("generator", "discriminator") if w > 0 else ("generator",):
      if player not in c.get("optim", {}):
        raise ConfigError(f"config.optim.{player} is missing: set config.optim.{player} = "
                          "ConfigDict(dict(name='adam', lr=1e-4, b1=0.9)) (the paper's Adam).")
      optim.validate_optimizer(c.optim[player], c.train.num_steps, where=f"config.optim.{player}")

  def frozen_parts(self) -> dict:
    return {"vgg": vgg.param_shapes()} if self.config.srgan.content == "vgg" else {}

  def init(self, rng: jax.Array, example_batch: Batch) -> TrainState:
    g_rng, d_rng, root = jax.random.split(rng, 3)
    low = jnp.zeros((1, *example_batch["low_res"].shape[1:]))
    g_vars = self.generator.init(g_rng, low, train=False)
    params = {"generator": g_vars.pop("params")}
    model_state = {"generator": g_vars}
    if self.adversarial:
      d_vars = self.discriminator.init(d_rng, jnp.zeros((1, *example_batch["image"].shape[1:])),
                                       train=False)
      params["discriminator"] = d_vars.pop("params")
      model_state["discriminator"] = d_vars
    opt_state = {p: self.optimizers[p].init(params[p]) for p in self.players}
    return TrainState.create(params=params, opt_state=opt_state, rng=root, model_state=model_state,
                             ema_params=ema_init(params["generator"], self.config.train))

  # --------------------------------------------------------------------------------------- losses
  def content_loss(self, frozen: dict, sr: jax.Array, hr: jax.Array) -> jax.Array:
    """Scalar float32: pixel MSE, or vgg_scale x the MSE of VGG features (HR's without gradient)."""
    if self.config.srgan.content == "mse":
      return jnp.mean(jnp.square(sr - hr))
    layer, variables = self.config.srgan.vgg_layer, {"params": frozen["vgg"]}
    # Two passes, not one on the concatenated batch: the HR half needs no backward pass.
    f_hr = jax.lax.stop_gradient(self.vgg.apply(variables, hr)[layer])
    f_sr = self.vgg.apply(variables, sr)[layer]
    diff = f_sr.astype(jnp.float32) - f_hr.astype(jnp.float32)
    return self.config.srgan.vgg_scale * jnp.mean(jnp.square(diff))

  def _discriminate(self, d_params: Any, collections: dict, images: jax.Array
                    ) -> tuple[jax.Array, dict]:
    """D's logits [B] with batch statistics, and its updated collections."""
    return self.discriminator.apply({"params": d_params, **collections}, images, train=True,
                                    mutable=list(collections))

  def _discriminator_step(self, state: TrainState, hr: jax.Array, sr: jax.Array
                          ) -> tuple[Any, Any, dict, dict]:
    """One optimizer step of D on real `hr` and fake `sr` (no gradient to G): new D params,
    optimizer state, collections and metrics."""
    d_params, d_ms = state.params["discriminator"], state.model_state["discriminator"]

    def loss_fn(p):
      # Real and fake as separate batches, so that each BatchNorm normalises a pure batch.
      real, ms = self._discriminate(p, d_ms, hr)
      fake, ms = self._discriminate(p, ms, jax.lax.stop_gradient(sr))
      return self.loss.d_loss(real, fake), (real, fake, ms)

    (loss, (real, fake, ms)), grads = jax.value_and_grad(loss_fn, has_aux=True)(d_params)
    updates, opt = self.optimizers["discriminator"].update(
        grads, state.opt_state["discriminator"], d_params)
    thr = self.loss.threshold
    metrics = {"d_loss": loss, "d_real_acc": jnp.mean((real > thr).astype(jnp.float32)),
               "d_fake_acc": jnp.mean((fake < thr).astype(jnp.float32))}
    return optax.apply_updates(d_params, updates), opt, ms, metrics

  def train_step(self, state: TrainState, batch: Batch, rng: jax.Array) -> tuple[TrainState, dict]:
    """Metrics: loss (G's total, + d_loss with a discriminator), content_loss, pixel_mse, psnr
    (of the training batch's SR, dB, [-1, 1] images), and with a discriminator adversarial_loss,
    d_loss, d_real_acc, d_fake_acc."""
    del rng  # Deterministic: no noise, no dropout.
    low, hr = batch["low_res"], batch["image"]
    params, ms, opt_state = dict(state.params), dict(state.model_state), dict(state.opt_state)

    def forward(g_params):
      return self.generator.apply({"params": g_params, **ms["generator"]}, low, train=True,
                                  mutable=list(ms["generator"]))

    sr, pullback, ms["generator"] = jax.vjp(forward, params["generator"], has_aux=True)
    metrics = {}
    if self.adversarial:
      params["discriminator"], opt_state["discriminator"], ms["discriminator"], metrics = (
          self._discriminator_step(state, hr, sr))

    def g_loss(sr):
      content = self.content_loss(state.frozen, sr, hr)
      aux = {"content_loss": content}
      total = content
      if self.adversarial:
        # D judges with batch statistics, as in its own step; the statistics it would write are
        # dropped, so that G's step leaves D untouched.
        fake, _ = self._discriminate(params["discriminator"], ms["discriminator"], sr)
        aux["adversarial_loss"] = self.loss.g_loss(fake)
        total = total + self.config.srgan.adversarial_weight * aux["adversarial_loss"]
      return total, aux

    (total, aux), sr_grad = jax.value_and_grad(g_loss, has_aux=True)(sr)
    grads, = pullback(sr_grad)
    updates, opt_state["generator"] = self.optimizers["generator"].update(
        grads, state.opt_state["generator"], params["generator"])
    params["generator"] = optax.apply_updates(params["generator"], updates)
    ema = state.ema_params
    if ema is not None:
      ema = ema_update(ema, params["generator"], ema_decay(self.config.train, state.step, low.shape[0]))
    mse = jnp.mean(jnp.square(jax.lax.stop_gradient(sr) - hr))
    metrics.update(aux, pixel_mse=mse, psnr=psnr_from_mse(mse),
                   loss=total + metrics.get("d_loss", 0.0))
    state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                          model_state=ms, ema_params=ema)
    return state, metrics

  # ------------------------------------------------------------------------------------- sampling
  def sampling_params(self, state: TrainState) -> Any:
    return state.params["generator"] if state.ema_params is None else state.ema_params

  def super_resolve(self, state: TrainState, low_res: jax.Array) -> jax.Array:
    """low_res [B, h, w, C] in [-1, 1] -> float32 [B, h * f, w * f, C] clipped to [-1, 1], with
    BatchNorm's running statistics."""
    sr = self.generator.apply({"params": self.sampling_params(state),
                               **state.model_state["generator"]}, low_res, train=False)
    return jnp.clip(sr, -1.0, 1.0)

  def sample(self, state: TrainState, rng: jax.Array, num: int, cond: Optional[Batch] = None
             ) -> jax.Array:
    """The super-resolved cond["low_res"] (its `num` rows); rng is unused (deterministic)."""
    if not cond or "low_res" not in cond:
      raise ValueError("SRGAN.sample needs cond={'low_res': [num, h, w, C]} (the loop feeds it from "
                       "eval rows); got " + (f"keys {sorted(cond)}" if cond else "None") + ".")
    return self.super_resolve(state, cond["low_res"][:num])

  def eval_step(self, state: TrainState, batch: Batch, rng: jax.Array) -> dict:
    """Per-example "mse" of the clipped SR image against "image" ([-1, 1] units)."""
    sr = self.super_resolve(state, batch["low_res"])
    return {"mse": jnp.mean(jnp.square(sr - batch["image"]), axis=(1, 2, 3))}
