"""Guidance: classifier-free (Ho & Salimans 2022) and classifier guidance (Dhariwal & Nichol 2021).

Classifier-free convention: out = out_u + s * (out_c - out_u); s = 0 is the unconditional model, s = 1
the conditional one, s > 1 extrapolates. It is applied to the raw network output: for every objective
(eps, x0, v) the implied eps is affine in the output with weights that do not depend on it, so
guiding the output is the same as guiding eps.
"""
from typing import Callable

import jax
import jax.numpy as jnp

# (x [B, ...], t int32 [B], labels int32 [B]) -> network output [B, ...]
LabelledModelFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
# (x [B, ...], t int32 [B]) -> logits float32 [B, num_classes]
ClassifierFn = Callable[[jax.Array, jax.Array], jax.Array]


def classifier_free(apply_fn: LabelledModelFn, labels: jax.Array, null_label: int,
                    scale: jax.Array | float) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """A model_fn for the samplers that evaluates the conditional and unconditional (null label) outputs
  in one doubled batch and mixes them with the (traced) `scale`."""
  def model_fn(x, t):
    b = x.shape[0]
    y = jnp.concatenate([labels, jnp.full_like(labels, null_label)])
    out = apply_fn(jnp.concatenate([x, x]), jnp.concatenate([t, t]), y)
    out_c, out_u = out[:b], out[b:]
    return out_u + scale * (out_c - out_u)
  return model_fn


def classifier_log_prob_grad(classifier_fn: ClassifierFn,
                             labels: jax.Array) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """grad_x log p(y | x_t, t) for each example (the classifier treats examples independently, so the
  gradient of the summed log-probabilities is the per-example gradient). Returns float32 [B, ...]."""
  def log_prob_sum(x, t):
    log_probs = jax.nn.log_softmax(classifier_fn(x, t).astype(jnp.float32))
    return jnp.sum(jnp.take_along_axis(log_probs, labels[:, None], axis=-1))

  def grad_fn(x, t):
    return jax.grad(log_prob_sum)(x, t)
  return grad_fn
