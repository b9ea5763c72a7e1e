"""The discriminator's shared heads: one trunk, any combination of heads, for every GAN variant.

A variant's discriminator is `Discriminator(trunk, ...)`: the trunk (an architecture from
jaxgen/models, e.g. the SN-GAN standard CNN or the InfoGAN MNIST net) maps images to a feature
vector, and the heads read it:

  logit        the adversarial output, always (a Dense to 1; the trunk's last linear layer)
  projection   cond_d="projection": + <embed(y), h>, the projection discriminator of Miyato &
               Koyama 2018, Eq. 3 (y's embedding V_y times the features; the Dense is their psi)
  class_logits aux_classes > 0: AC-GAN's auxiliary classifier (Odena et al. 2017), [B, K]
  q_*          q=True and InfoGAN codes configured: Q's categorical logits and continuous code
               means / log-variances (Chen et al. 2016), through an optional hidden layer of Q
               (FC-BN-lReLU, the paper's MNIST Q) on the shared trunk

cond_d="concat" instead gives the trunk the one-hot label to concatenate with its input
(`concat_condition`), as the conditional GAN of Mirza & Osindero 2014. With `spectral`, every head's
weight (the embedding included, as Miyato & Koyama) is spectrally normalised like the trunk's.

Trunk interface: trunk(x [B, H, W, C], train: bool, cond: float32 [B, E] or None) -> [B, F].
"""
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.nn.norm import BatchNorm
from jaxgen.nn.spectral import SNDense, spectral_normalize

COND_D = ("none", "concat", "projection")
_INIT = nn.initializers.normal(stddev=0.02)


def concat_condition(x: jax.Array, cond: Optional[jax.Array]) -> jax.Array:
  """x [B, F] or images [B, H, W, C] with cond [B, E] appended: on the feature axis, or as E
  constant channels (the label map of conditional convolutional GANs). cond None: x unchanged."""
  if cond is None:
    return x
  cond = cond.astype(x.dtype)
  if x.ndim == 2:
    return jnp.concatenate([x, cond], axis=-1)
  tiled = jnp.broadcast_to(cond[:, None, None, :], x.shape[:-1] + cond.shape[-1:])
  return jnp.concatenate([x, tiled], axis=-1)


class Discriminator(nn.Module):
  """trunk + heads: (images [B, H, W, C], train, label int32 [B] or None, q) -> dict of outputs
  ("logit" float32 [B]; "class_logits" [B, aux_classes]; with q, "q_cat_logits" [B, q_categorical],
  "q_cont_mean" / "q_cont_logvar" [B, q_continuous]), all float32.

  Attributes:
    trunk: the architecture, see the module docstring.
    num_classes: label values (cond_d != "none").
    cond_d: how D sees the label: "none", "concat" (into the trunk's input), "projection".
    aux_classes: AC-GAN classes (0 = no auxiliary classifier).
    q_categorical, q_continuous: InfoGAN code sizes Q predicts (one categorical code of that many
      values; that many continuous codes). 0 and 0 = no Q head.
    q_hidden: width of Q's hidden layer (0 = linear Q on the trunk features).
    q_fixed_std: continuous codes' Q has unit variance (logvar 0), as the InfoGAN reference code.
    spectral: spectrally normalise the heads' weights.
  """
  trunk: nn.Module
  num_classes: int = 0
  cond_d: str = "none"
  aux_classes: int = 0
  q_categorical: int = 0
  q_continuous: int = 0
  q_hidden: int = 0
  q_fixed_std: bool = True
  spectral: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, label: Optional[jax.Array] = None,
               q: bool = False) -> dict:
    if self.cond_d not in COND_D:
      raise ValueError(f"cond_d={self.cond_d!r}; use one of {COND_D}.")
    if self.cond_d != "none" and label is None:
      raise ValueError(f"cond_d={self.cond_d!r} needs labels; got label=None.")
    cond = (jax.nn.one_hot(label, self.num_classes, dtype=jnp.float32)
            if self.cond_d == "concat" else None)
    h = self.trunk(x, train, cond)
    dense = lambda n, name: SNDense(n, spectral=self.spectral, kernel_init=_INIT, name=name)  # noqa: E731
    out = {"logit": dense(1, "logit")(h, train)[:, 0].astype(jnp.float32)}
    if self.cond_d == "projection":
      embed = self.param("projection", _INIT, (self.num_classes, h.shape[-1]), jnp.float32)
      if self.spectral:
        embed = spectral_normalize(self, embed, train, name="projection")
      out["logit"] = out["logit"] + jnp.sum(embed[label].astype(h.dtype) * h, axis=-1).astype(jnp.float32)
    if self.aux_classes:
      out["class_logits"] = dense(self.aux_classes, "classifier")(h, train).astype(jnp.float32)
    if q and (self.q_categorical or self.q_continuous):
      hq = h
      if self.q_hidden:
        hq = dense(self.q_hidden, "q_hidden")(hq, train)
        hq = BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=hq.dtype,
                       param_dtype=jnp.float32, name="q_bn")(hq)
        hq = nn.leaky_relu(hq, 0.1)
      n_cont = self.q_continuous * (1 if self.q_fixed_std else 2)
      qo = dense(self.q_categorical + n_cont, "q_out")(hq, train).astype(jnp.float32)
      out["q_cat_logits"] = qo[:, :self.q_categorical]
      cont = qo[:, self.q_categorical:]
      out["q_cont_mean"] = cont[:, :self.q_continuous]
      out["q_cont_logvar"] = (jnp.zeros_like(out["q_cont_mean"]) if self.q_fixed_std
                              else cont[:, self.q_continuous:])
    return out
