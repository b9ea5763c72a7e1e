"""Variational autoencoder (Kingma & Welling 2014) with importance-weighted NLL (Burda et al. 2016).

Likelihoods (config.model.likelihood):
  "bernoulli": dynamically binarized data. Each training step draws x ~ Bernoulli((image + 1) / 2)
    with the step's rng; evaluation binarizes each test image with a key derived from its pixel
    values, so repeated evaluations (any batch order, any sharding) see the same binary images.
  "discretized_gaussian": 8-bit data. Per-pixel Gaussian integrated over the pixel's bin of width
    2/255 in [-1, 1]; the edge bins extend to -inf / +inf so the 256 probabilities sum to 1.

The posterior is a diagonal Gaussian (reparameterisation trick), the prior N(0, I), the KL closed
form. Conditional VAE (config.model.conditional): one-hot labels go into the encoder and decoder and
all likelihoods are conditional, log p(x | y).

Everything is a mean over the batch or per-example, in jnp only, so it runs unchanged on a batch
sharded over a mesh.
"""
import math
from typing import Optional

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxgen import optim
from jaxgen.distributions import (bernoulli_log_prob, binarize_per_example,  # noqa: F401 (API)
                                  discretized_gaussian_log_prob, gaussian_log_prob,
                                  standard_normal_kl)
from jaxgen.methods.base import Batch, ConfigError, Method, cycling_labels
from jaxgen.models import vae as vae_model
from jaxgen.nn.dtypes import parse_dtype
from jaxgen.state import TrainState, ema_decay, ema_init, jit_once

LIKELIHOODS = ("bernoulli", "discretized_gaussian")
DTYPES = ("float32", "bfloat16", "float16")   # the compute dtypes the VAE supports
# Lower bound on the decoder's Gaussian log-scale: keeps the bin integral finite in float32.
MIN_LOG_SCALE = -7.0


class VAE(Method):
  """VAE / conditional VAE. Config: model.{latent_dim, channels, hidden, likelihood, conditional,
  dtype}, optim (see jaxgen.optim), eval.{iwae_k, iwae_chunk}, train.ema_decay."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    m, d = config.model, config.data
    self.likelihood = m.likelihood
    self.conditional = bool(m.conditional)
    self.num_classes = d.num_classes
    self.image_shape = (d.image_size, d.image_size, d.channels)
    self.num_dims = d.image_size * d.image_size * d.channels
    out_channels = d.channels if m.likelihood == "bernoulli" else 2 * d.channels
    self.model = vae_model.VAE(channels=tuple(m.channels), hidden=m.hidden, latent_dim=m.latent_dim,
                               image_size=d.image_size, out_channels=out_channels,
                               dtype=parse_dtype(m.dtype, allowed=DTYPES))
    self.tx = optim.make_optimizer(config.optim, config.train.num_steps)

  def validate(self) -> None:
    m, d, e = self.config.model, self.config.data, self.config.eval
    if m.likelihood not in LIKELIHOODS:
      raise ConfigError(f"config.model.likelihood={m.likelihood!r} is unknown; use one of {LIKELIHOODS}.")
    if not m.channels or m.latent_dim < 1 or m.hidden < 1:
      raise ConfigError(f"config.model needs channels (non-empty, got {tuple(m.channels)}), latent_dim "
                        f">= 1 (got {m.latent_dim}) and hidden >= 1 (got {m.hidden}).")
    factor = 2 ** len(m.channels)
    if d.image_size % factor:
      raise ConfigError(
          f"config.data.image_size={d.image_size} is not divisible by 2**len(config.model.channels)="
          f"{factor} (each of the {len(m.channels)} levels halves the image); use an image_size that is "
          f"a multiple of {factor} (e.g. {max(factor, d.image_size // factor * factor)}) or fewer "
          "model.channels levels.")
    if m.conditional and d.num_classes <= 0:
      raise ConfigError(f"config.model.conditional=True needs labels but config.data.num_classes="
                        f"{d.num_classes}; set data.num_classes to the dataset's number of classes "
                        "(e.g. 10 for MNIST) or set model.conditional=False.")
    if e.iwae_k < 1 or e.iwae_chunk < 1 or e.iwae_k % e.iwae_chunk:
      raise ConfigError(f"config.eval.iwae_k={e.iwae_k} must be a positive multiple of "
                        f"config.eval.iwae_chunk={e.iwae_chunk}; e.g. iwae_k=5000 with iwae_chunk=100.")

  # --- pieces -----------------------------------------------------------------------------------

  def _cond(self, labels: Optional[jax.Array]) -> Optional[jax.Array]:
    """int32 labels [B] -> one-hot float32 [B, num_classes] for a conditional VAE, else None."""
    if not self.conditional:
      return None
    return jax.nn.one_hot(labels, self.num_classes, dtype=jnp.float32)

  def targets(self, images: jax.Array, rng: Optional[jax.Array]) -> tuple[jax.Array, jax.Array]:
    """(likelihood target, encoder input) for images in [-1, 1].

    Bernoulli: target in {0, 1} drawn with `rng` (training) or per-example keys (rng=None,
    evaluation); the encoder sees it mapped to {-1, 1}. Gaussian: both are the images themselves.
    """
    if self.likelihood != "bernoulli":
      return images, images
    if rng is None:
      target = binarize_per_example(images)
    else:
      # Drawn as [B, H*W*C]: XLA:CPU compiles 2-D threefry draws much faster than 4-D ones.
      probs = (images + 1.0).reshape(images.shape[0], -1) / 2.0
      target = jax.random.bernoulli(rng, probs).astype(jnp.float32).reshape(images.shape)
    return target, 2.0 * target - 1.0

  def log_likelihood(self, target: jax.Array, out: jax.Array) -> jax.Array:
    """log p(target | z) per example, float32 [B], from decoder output `out` [B, H, W, C or 2C]."""
    if self.likelihood == "bernoulli":
      ll = bernoulli_log_prob(target, out)
    else:
      mean, log_scale = jnp.split(out, 2, axis=-1)
      ll = discretized_gaussian_log_prob(target, mean, jnp.maximum(log_scale, MIN_LOG_SCALE))
    return jnp.sum(ll.reshape(ll.shape[0], -1), axis=-1)

  def _mean_image(self, out: jax.Array) -> jax.Array:
    """Decoder output -> the likelihood's mean, mapped to [-1, 1]. float32 [B, H, W, C]."""
    if self.likelihood == "bernoulli":
      return 2.0 * jax.nn.sigmoid(out) - 1.0
    return jnp.clip(jnp.split(out, 2, axis=-1)[0], -1.0, 1.0)

  # --- Method interface -------------------------------------------------------------------------

  def init(self, rng: jax.Array, example_batch: Batch) -> TrainState:
    x = jnp.zeros((1,) + self.image_shape, jnp.float32)
    cond = self._cond(jnp.zeros((1,), jnp.int32))
    # Jitted: eager Flax init compiles every op separately, which costs seconds on CPU.
    params = jit_once(self.model.init)(rng, x, cond)["params"]
    return TrainState.create(params=params, opt_state=self.tx.init(params), rng=rng,
                             ema_params=ema_init(params, self.config.train))

  def train_step(self, state: TrainState, batch: Batch, rng: jax.Array) -> tuple[TrainState, dict]:
    bin_rng, z_rng = jax.random.split(rng)
    target, x_in = self.targets(batch["image"], bin_rng)
    cond = self._cond(batch.get("label"))

    def loss_fn(params):
      mean, logvar = self.model.apply({"params": params}, x_in, cond, method="encode")
      z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(z_rng, mean.shape)
      out = self.model.apply({"params": params}, z, cond, method="decode")
      rec = -self.log_likelihood(target, out)
      kl = standard_normal_kl(mean, logvar)
      neg_elbo = jnp.mean(rec + kl)
      return neg_elbo, {"recon": jnp.mean(rec), "kl": jnp.mean(kl)}

    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    metrics = {"loss": loss, "neg_elbo": loss, **aux,
               "bits_per_dim": loss / (self.num_dims * math.log(2)),
               "grad_norm": optax.tree.norm(grads)}
    decay = ema_decay(self.config.train, state.step, batch["image"].shape[0])
    return state.apply_gradients(self.tx, grads, decay), metrics

  @property
  def cond_keys(self) -> tuple[str, ...]:
    return ("label",) if self.conditional else ()

  def default_cond(self, num: int) -> Optional[dict]:
    """Conditional VAE: labels cycling through the classes 0, 1, ..., int32 [num]."""
    return {"label": cycling_labels(num, self.num_classes)} if self.conditional else None

  def sample(self, state: TrainState, rng: jax.Array, num: int, cond: Optional[Batch] = None
             ) -> jax.Array:
    """z ~ N(0, I) decoded to the likelihood's mean in [-1, 1], float32 [num, H, W, C].
    Conditional: cond {"label": int32 [num]}; None cycles through the classes 0, 1, ..."""
    labels = None
    if self.conditional:
      labels = jnp.asarray((self.default_cond(num) if cond is None else cond)["label"], jnp.int32)
    z = jax.random.normal(rng, (num, self.config.model.latent_dim))
    out = self.model.apply({"params": self.sampling_params(state)}, z, self._cond(labels), method="decode")
    return self._mean_image(out)

  def interpolate(self, state: TrainState, x_a: jax.Array, x_b: jax.Array, num: int,
                  labels: Optional[jax.Array] = None) -> jax.Array:
    """Decodes `num` points on the line between the posterior means of x_a and x_b.

    x_a, x_b: float32 [H, W, C] in [-1, 1] (fed to the encoder as they are). labels: int32 [2], the
    classes of x_a and x_b (conditional VAE only); the one-hot condition is interpolated along with
    z, so both endpoints are exactly the reconstructions of x_a and x_b. Returns float32
    [num, H, W, C] in [-1, 1]; the first is x_a's reconstruction, the last x_b's.
    """
    params = {"params": self.sampling_params(state)}
    cond = self._cond(labels)
    mean, _ = self.model.apply(params, jnp.stack([x_a, x_b]), cond, method="encode")
    t = jnp.linspace(0.0, 1.0, num)[:, None]
    z = (1.0 - t) * mean[0] + t * mean[1]
    if cond is not None:
      cond = (1.0 - t) * cond[0] + t * cond[1]
    return self._mean_image(self.model.apply(params, z, cond, method="decode"))

  def iwae_bounds(self, params, target: jax.Array, x_in: jax.Array, cond: Optional[jax.Array],
                  rng: jax.Array, k: int, chunk: int) -> tuple[jax.Array, jax.Array]:
    """Importance-weighted estimate of log p(x) with k samples, and a k-sample ELBO estimate.

    Samples z_1..z_k ~ q(z|x) in k / chunk chunks (lax.scan), keeping a running logsumexp of the
    log-weights log p(x|z) + log p(z) - log q(z|x) and a running sum of log p(x|z), so memory is
    that of `chunk` decoder passes per example whatever k is.
    Returns (log p_k(x) = logsumexp(log w) - log k, ELBO = mean log p(x|z) - KL), float32 [B] each.
    """
    mean, logvar = self.model.apply({"params": params}, x_in, cond, method="encode")
    batch, latent = mean.shape

    def body(carry, key):
      lse, ll_sum = carry
      # Batch-major [B, chunk, ...] so that flattening keeps each device's examples on that device
      # when the batch is sharded. Noise is drawn 2-D: XLA:CPU compiles that faster than 3-D.
      eps = jax.random.normal(key, (batch, chunk * latent)).reshape(batch, chunk, latent)
      z = mean[:, None] + jnp.exp(0.5 * logvar)[:, None] * eps
      c = None if cond is None else jnp.repeat(cond, chunk, axis=0)
      out = self.model.apply({"params": params}, z.reshape(batch * chunk, latent), c, method="decode")
      target_rep = jnp.repeat(target, chunk, axis=0)
      log_px = self.log_likelihood(target_rep, out).reshape(batch, chunk)
      log_w = (log_px + gaussian_log_prob(z, jnp.zeros_like(z), jnp.zeros_like(z))
               - gaussian_log_prob(z, mean[:, None], logvar[:, None]))
      lse = jnp.logaddexp(lse, jax.scipy.special.logsumexp(log_w, axis=1))
      return (lse, ll_sum + jnp.sum(log_px, axis=1)), None

    init = (jnp.full((batch,), -jnp.inf), jnp.zeros((batch,)))
    (lse, ll_sum), _ = jax.lax.scan(body, init, jax.random.split(rng, k // chunk))
    return lse - math.log(k), ll_sum / k - standard_normal_kl(mean, logvar)

  def eval_step(self, state: TrainState, batch: Batch, rng: jax.Array) -> dict:
    """Per-example float32 [B]: neg_elbo and nll (importance-weighted, k = eval.iwae_k) in nats,
    bits_per_dim of the nll. Binary targets come from per-example keys (same for every eval)."""
    target, x_in = self.targets(batch["image"], None)
    log_px, elbo = self.iwae_bounds(self.sampling_params(state), target, x_in,
                                    self._cond(batch.get("label")), rng,
                                    self.config.eval.iwae_k, self.config.eval.iwae_chunk)
    return {"neg_elbo": -elbo, "nll": -log_px, "bits_per_dim": -log_px / (self.num_dims * math.log(2))}
