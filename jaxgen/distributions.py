"""Gaussian log-likelihoods and KL divergences: the one home for the VAE, diffusion and later
families (latent diffusion's autoencoder, PixelCNN++ style decoders).

All in float32 jnp, elementwise unless a docstring says "summed over the last axis", so they run
unchanged on batches sharded over a mesh.
"""
import math

import jax
import jax.numpy as jnp


def normal_kl(mean1, logvar1, mean2, logvar2) -> jax.Array:
  """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise, in nats."""
  return 0.5 * (-1.0 + logvar2 - logvar1 + jnp.exp(logvar1 - logvar2)
                + jnp.square(mean1 - mean2) * jnp.exp(-logvar2))


def standard_normal_kl(mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(mean, exp(logvar)) || N(0, I)), summed over the last axis (a VAE's posterior vs prior)."""
  return 0.5 * jnp.sum(jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar, axis=-1)


def gaussian_log_prob(z: jax.Array, mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """log N(z; mean, exp(logvar)), summed over the last axis."""
  return -0.5 * jnp.sum(jnp.square(z - mean) * jnp.exp(-logvar) + logvar + math.log(2 * math.pi),
                        axis=-1)


def discretized_gaussian_log_prob(x: jax.Array, mean: jax.Array, log_scale: jax.Array) -> jax.Array:
  """log P(bin of x) per element, for a Gaussian N(mean, exp(log_scale)^2) over [-1, 1] (DDPM's L_0
  decoder, a VAE's 8-bit likelihood).

  x: 8-bit values mapped to [-1, 1], i.e. -1 + 2 k / 255 for k in 0..255 (rounded to that grid).
  The bin of k is [x - 1/255, x + 1/255], except k = 0 starts at -inf and k = 255 ends at +inf, so
  the 256 probabilities sum to 1. Uses the exact normal CDF in log space (the DDPM reference code
  uses a tanh approximation of the CDF and clamps the bin probability at 1e-12).
  """
  k = jnp.round((x + 1.0) * 127.5)
  centred = k / 127.5 - 1.0 - mean
  inv_scale = jnp.exp(-log_scale)
  upper = (centred + 1.0 / 255.0) * inv_scale
  lower = (centred - 1.0 / 255.0) * inv_scale
  # log(Phi(upper) - Phi(lower)) from log-CDFs. In the upper tail both CDFs round to 1, so use the
  # mirror image Phi(-lower) - Phi(-upper) there; both terms are then small and exact in log space.
  flip = lower > 0.0
  log_hi = jax.scipy.special.log_ndtr(jnp.where(flip, -lower, upper))
  log_lo = jax.scipy.special.log_ndtr(jnp.where(flip, -upper, lower))
  # The clamp keeps the log (and its gradient) finite where the two CDFs are equal in float32.
  log_mid = log_hi + jnp.log(jnp.maximum(-jnp.expm1(log_lo - log_hi), 1e-30))
  return jnp.where(k <= 0, jax.scipy.special.log_ndtr(upper),
                   jnp.where(k >= 255, jax.scipy.special.log_ndtr(-lower), log_mid))
