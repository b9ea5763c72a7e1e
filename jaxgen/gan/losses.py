"""GAN losses and regularisers, shared by every adversarial method (methods/gan.py, and the
CycleGAN / SRGAN methods that reuse them).

Each adversarial loss is a pair of functions of the discriminator's raw outputs, so a variant is one
entry in LOSSES; regularisers are functions of the discriminator's apply function and inputs; the
auxiliary terms (AC-GAN's class log-likelihood, InfoGAN's mutual-information bound) are functions of
D's extra heads' outputs and the codes they should predict. All return float32 scalars averaged over
the batch, so they run unchanged on batches sharded over a mesh.
"""
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxgen import distributions


class GANLoss(NamedTuple):
  """An adversarial loss. `real` and `fake` are D's raw outputs, float32 [B].

  Attributes:
    d_loss: (real, fake) -> scalar, minimised by the discriminator.
    g_loss: fake -> scalar, minimised by the generator.
    threshold: D output above which an input counts as classified real (for the accuracy metrics).
  """
  d_loss: Callable[[jax.Array, jax.Array], jax.Array]
  g_loss: Callable[[jax.Array], jax.Array]
  threshold: float


# softplus(x) = -log(sigmoid(-x)), computed as logaddexp(x, 0): finite for any logit, where the
# naive log(sigmoid(.)) gives -inf once sigmoid underflows (|logit| > ~104 in float32).
def _bce_d_loss(real: jax.Array, fake: jax.Array) -> jax.Array:
  """D's binary cross-entropy, real -> 1, fake -> 0: -log D(x) - log(1 - D(G(z)))."""
  return jnp.mean(jax.nn.softplus(-real)) + jnp.mean(jax.nn.softplus(fake))


# The original game (Goodfellow et al. 2014, Eq. 1): G minimises log(1 - D(G(z))) = -softplus(fake).
# Its gradient vanishes when D rejects the fakes confidently (early in training), Sec. 3.
MINIMAX = GANLoss(
    d_loss=_bce_d_loss,
    g_loss=lambda fake: -jnp.mean(jax.nn.softplus(fake)),
    threshold=0.0)

NON_SATURATING = GANLoss(
    d_loss=_bce_d_loss,
    # G maximises log D(G(z)) instead of minimising log(1 - D(G(z))): strong gradients early on,
    # when D rejects the fakes easily (Goodfellow et al. 2014, Sec. 3).
    g_loss=lambda fake: jnp.mean(jax.nn.softplus(-fake)),
    threshold=0.0)

# Least squares GAN (Mao et al. 2017, Eq. 2 with a = 0, b = c = 1): D regresses real -> 1, fake -> 0.
LSGAN = GANLoss(
    d_loss=lambda real, fake: 0.5 * jnp.mean((real - 1.0) ** 2) + 0.5 * jnp.mean(fake ** 2),
    g_loss=lambda fake: 0.5 * jnp.mean((fake - 1.0) ** 2),
    threshold=0.5)

# Hinge loss (Lim & Ye 2017; Miyato et al. 2018, Eq. 16-17).
HINGE = GANLoss(
    d_loss=lambda real, fake: jnp.mean(jax.nn.relu(1.0 - real)) + jnp.mean(jax.nn.relu(1.0 + fake)),
    g_loss=lambda fake: -jnp.mean(fake),
    threshold=0.0)

# Wasserstein critic (Arjovsky et al. 2017; Gulrajani et al. 2017, Alg. 1): the critic maximises
# E[D(x)] - E[D(G(z))], the generator maximises E[D(G(z))]. Needs a Lipschitz constraint on D: a
# gradient penalty (config.gan.gp_weight) or spectral normalisation. The threshold 0 is arbitrary
# (a critic's outputs have no fixed origin); the accuracies it gives are only indicative.
WASSERSTEIN = GANLoss(
    d_loss=lambda real, fake: jnp.mean(fake) - jnp.mean(real),
    g_loss=lambda fake: -jnp.mean(fake),
    threshold=0.0)

LOSSES: dict[str, GANLoss] = {"minimax": MINIMAX, "non_saturating": NON_SATURATING, "lsgan": LSGAN,
                              "hinge": HINGE, "wasserstein": WASSERSTEIN}


# ------------------------------------------------------------------------------------ regularisers
# `d_fn` maps images [B, ...] to D's outputs [B] with everything but the images fixed (params,
# labels). The per-example input gradients come from one backward pass of sum(d_fn(x)), which is
# exact only when D treats the examples independently (no batch statistics in that pass).

def _grad_sq_norms(d_fn: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
  """||grad_x d_fn(x)_i||_2^2 per example, float32 [B]."""
  grads = jax.grad(lambda v: jnp.sum(d_fn(v).astype(jnp.float32)))(x)
  return jnp.sum(jnp.square(grads.astype(jnp.float32)).reshape(x.shape[0], -1), axis=1)


def gradient_penalty(d_fn: Callable[[jax.Array], jax.Array], real: jax.Array, fake: jax.Array,
                     rng: jax.Array) -> jax.Array:
  """WGAN-GP's penalty (Gulrajani et al. 2017, Eq. 3 and Alg. 1), without its weight lambda:
  mean_i (||grad D(x_hat_i)||_2 - 1)^2 at x_hat = eps x_real + (1 - eps) x_fake, eps ~ U[0, 1] per
  example (key `rng`). real, fake: float32 [B, ...]. The fakes are treated as constants."""
  eps = jax.random.uniform(rng, (real.shape[0],) + (1,) * (real.ndim - 1), jnp.float32)
  x_hat = eps * real + (1.0 - eps) * jax.lax.stop_gradient(fake)
  # The 1e-12 keeps the gradient of the norm finite where an input gradient is exactly 0.
  norms = jnp.sqrt(_grad_sq_norms(d_fn, x_hat) + 1e-12)
  return jnp.mean(jnp.square(norms - 1.0))


def r1_penalty(d_fn: Callable[[jax.Array], jax.Array], real: jax.Array) -> jax.Array:
  """R1 (Mescheder et al. 2018, Eq. 9) without its gamma / 2: mean_i ||grad_x D(x_i)||_2^2 on real
  images float32 [B, ...]."""
  return jnp.mean(_grad_sq_norms(d_fn, real))


# ----------------------------------------------------------------------------- auxiliary heads

def class_nll(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean -log softmax(logits)[label]: logits float [B, K], labels int [B] in [0, K).

  AC-GAN (Odena et al. 2017, Eq. 2): L_C = E[log P(C = c | X_real)] + E[log P(C = c | X_fake)]; D
  maximises L_S + L_C, G maximises L_C - L_S, so D adds class_nll on reals and fakes to its loss
  and G adds class_nll on fakes to its own. InfoGAN's categorical codes use it the same way."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return -jnp.mean(jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1))


def continuous_code_nll(mean: jax.Array, logvar: jax.Array, codes: jax.Array) -> jax.Array:
  """Mean over the batch of -log Q(c | x) under a factored Gaussian N(mean, exp(logvar)), summed
  over the code dimensions: mean, logvar, codes float32 [B, D] (InfoGAN's continuous codes,
  Chen et al. 2016, Sec. 5; logvar = 0 is the reference code's fixed unit std)."""
  return -jnp.mean(distributions.gaussian_log_prob(codes.astype(jnp.float32), mean.astype(jnp.float32),
                                                   logvar.astype(jnp.float32)))


def categorical_entropy(num_categories: int) -> float:
  """H(c) of a uniform categorical code, nats: InfoGAN's bound L_I = H(c) - E[-log Q(c | x)]
  (Chen et al. 2016, Eq. 5) is this minus `class_nll`; it reaches log K when Q is always right."""
  return math.log(num_categories)


def uniform_entropy(low: float = -1.0, high: float = 1.0) -> float:
  """Differential entropy of U(low, high) per dimension, nats: log(high - low), log 2 for U(-1, 1)."""
  return math.log(high - low)
