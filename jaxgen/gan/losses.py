"""GAN losses and regularisers, shared by every adversarial method (methods/gan.py, and the
CycleGAN / SRGAN methods that reuse them).

Each adversarial loss is a pair of functions of the discriminator's raw outputs, so a variant is one
entry in LOSSES; regularisers are functions of the discriminator's apply function and inputs.
"""
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


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
NON_SATURATING = GANLoss(
    # D: binary cross-entropy, real -> 1, fake -> 0.
    d_loss=lambda real, fake: jnp.mean(jax.nn.softplus(-real)) + jnp.mean(jax.nn.softplus(fake)),
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

LOSSES: dict[str, GANLoss] = {"non_saturating": NON_SATURATING, "lsgan": LSGAN, "hinge": HINGE}
