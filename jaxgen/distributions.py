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


# Seed of the per-example evaluation binarization. Fixed (not config.seed) so that every run and
# every family (VAE, PixelCNN, ...) is evaluated on the same binary test set.
EVAL_BINARIZE_SEED = 0


def bernoulli_log_prob(x: jax.Array, logits: jax.Array) -> jax.Array:
  """log Bernoulli(x; sigmoid(logits)) per element; x in {0, 1} (any float in [0, 1] works)."""
  return x * jax.nn.log_sigmoid(logits) + (1.0 - x) * jax.nn.log_sigmoid(-logits)


def binarize_per_example(images: jax.Array, seed: int = EVAL_BINARIZE_SEED) -> jax.Array:
  """Stochastic binarization with a key derived from each image's 8-bit pixel values.

  images: float32 [B, H, W, C] in [-1, 1]. Returns float32 {0, 1} of the same shape, with
  P(1) = (image + 1) / 2, identical for the same image whatever its batch or position.
  """
  batch = images.shape[0]
  pixels = jnp.round((images + 1.0) * 127.5).astype(jnp.uint32).reshape(batch, -1)
  # A multiplicative hash of the pixels (uint32 arithmetic wraps): distinct images get distinct keys.
  weights = jnp.arange(pixels.shape[1], dtype=jnp.uint32) * jnp.uint32(2654435761) + jnp.uint32(1)
  hashes = jnp.sum(pixels * weights, axis=1, dtype=jnp.uint32)
  keys = jax.vmap(lambda h: jax.random.fold_in(jax.random.PRNGKey(seed), h))(hashes)
  probs = (images + 1.0) / 2.0
  return jax.vmap(jax.random.bernoulli)(keys, probs).astype(jnp.float32)


def categorical_log_prob(x: jax.Array, logits: jax.Array) -> jax.Array:
  """log p of 8-bit values under a 256-way softmax per element: x float [..., C] in [-1, 1] (on the
  grid -1 + 2k/255), logits [..., C, 256]. Returns float32 [..., C]."""
  k = jnp.clip(jnp.round((x + 1.0) * 127.5), 0, 255).astype(jnp.int32)
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return jnp.take_along_axis(logp, k[..., None], axis=-1)[..., 0]


def _split_mix(params: jax.Array, channels: int) -> tuple[jax.Array, ...]:
  """PixelCNN++'s layout (openai/pixel-cnn nn.py): params [..., M * (3 C + 1)] for C=3 is
  [M mixture logits | then, reshaped to [..., 3, 3 M]: M means, M log scales, M coefficients per
  channel]; for C=1, [M logits | M means | M log scales]. Returns (logits [..., M], means
  [..., C, M], log_scales [..., C, M] clamped at -7, coeffs [..., C, M] (tanh; zeros for C=1))."""
  m = params.shape[-1] // (1 + 3 * channels) if channels == 3 else params.shape[-1] // 3
  logits = params[..., :m]
  rest = params[..., m:].reshape(params.shape[:-1] + (channels, 3 * m) if channels == 3 else
                                 params.shape[:-1] + (1, 2 * m))
  means = rest[..., :m]
  log_scales = jnp.maximum(rest[..., m:2 * m], -7.0)
  coeffs = jnp.tanh(rest[..., 2 * m:3 * m]) if channels == 3 else jnp.zeros_like(means)
  return logits, means, log_scales, coeffs


def discretized_mix_logistic_log_prob(x: jax.Array, params: jax.Array) -> jax.Array:
  """log p(pixel) under PixelCNN++'s discretized logistic mixture (Salimans et al. 2017, Eq. 2-3 and
  the reference discretized_mix_logistic_loss): x float [B, H, W, C] in [-1, 1] (8-bit grid), C in
  {1, 3}; params [B, H, W, M * 10] (C=3) or [B, H, W, M * 3] (C=1), see `_split_mix`. The green
  mean is shifted by c0 * red and the blue one by c1 * red + c2 * green (channels conditioned within
  the pixel through linear coefficients). Returns float32 [B, H, W] (summed over channels,
  log-sum-exp over the mixture). Edge bins extend to -inf / +inf, so probabilities sum to 1."""
  c = x.shape[-1]
  logits, means, log_scales, coeffs = _split_mix(params.astype(jnp.float32), c)
  xm = x[..., None].astype(jnp.float32)                                  # [B, H, W, C, 1]
  if c == 3:
    m1 = means[..., 1, :] + coeffs[..., 0, :] * xm[..., 0, :]
    m2 = means[..., 2, :] + coeffs[..., 1, :] * xm[..., 0, :] + coeffs[..., 2, :] * xm[..., 1, :]
    means = jnp.stack([means[..., 0, :], m1, m2], axis=-2)
  centred = xm - means
  inv_s = jnp.exp(-log_scales)
  plus_in = inv_s * (centred + 1.0 / 255.0)
  min_in = inv_s * (centred - 1.0 / 255.0)
  log_cdf_plus = plus_in - jax.nn.softplus(plus_in)        # log sigmoid(plus_in): the 0 bin
  log_one_minus_cdf_min = -jax.nn.softplus(min_in)         # log(1 - sigmoid(min_in)): the 255 bin
  cdf_delta = jax.nn.sigmoid(plus_in) - jax.nn.sigmoid(min_in)
  mid_in = inv_s * centred
  log_pdf_mid = mid_in - log_scales - 2.0 * jax.nn.softplus(mid_in)
  # As the reference: where the bin mass underflows, the density at the centre times the bin width.
  log_mid = jnp.where(cdf_delta > 1e-5, jnp.log(jnp.maximum(cdf_delta, 1e-12)),
                      log_pdf_mid - jnp.log(127.5))
  log_probs = jnp.where(xm < -0.999, log_cdf_plus, jnp.where(xm > 0.999, log_one_minus_cdf_min, log_mid))
  per_mix = jnp.sum(log_probs, axis=-2) + jax.nn.log_softmax(logits, axis=-1)  # [B, H, W, M]
  return jax.scipy.special.logsumexp(per_mix, axis=-1)


def sample_mix_logistic(rng: jax.Array, params: jax.Array, channels: int) -> jax.Array:
  """A pixel from the discretized logistic mixture (the reference sample_from_discretized_mix_logistic,
  then rounded to the 8-bit grid): params [..., M * 10] or [..., M * 3] -> float32 [..., C] in
  [-1, 1]. Channels are drawn in order, each mean shifted by the already drawn channels."""
  logits, means, log_scales, coeffs = _split_mix(params.astype(jnp.float32), channels)
  k_rng, u_rng = jax.random.split(rng)
  sel = jax.nn.one_hot(jax.random.categorical(k_rng, logits), logits.shape[-1])[..., None, :]
  means, log_scales, coeffs = (jnp.sum(a * sel, -1) for a in (means, log_scales, coeffs))
  u = jax.random.uniform(u_rng, means.shape, minval=1e-5, maxval=1.0 - 1e-5)
  x = means + jnp.exp(log_scales) * (jnp.log(u) - jnp.log1p(-u))
  # (Clipped again: XLA may divide by multiplying with 1/127.5, which lands 1e-7 outside [-1, 1].)
  grid = lambda v: jnp.clip(jnp.round((jnp.clip(v, -1.0, 1.0) + 1.0) * 127.5) / 127.5 - 1.0, -1.0, 1.0)  # noqa: E731
  if channels == 1:
    return grid(x)
  x0 = grid(x[..., 0])
  x1 = grid(x[..., 1] + coeffs[..., 0] * x0)
  x2 = grid(x[..., 2] + coeffs[..., 1] * x0 + coeffs[..., 2] * x1)
  return jnp.stack([x0, x1, x2], axis=-1)
