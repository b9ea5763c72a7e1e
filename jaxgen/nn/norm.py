"""Normalisation layers: BatchNorm (flax.linen.BatchNorm's semantics, fast CPU gradient) and instance norm.

Flax's BatchNorm reduces a [B, H, W, C] activation over everything but the channels: the mean and
the mean of squares forward, and in the backward pass the sums of the incoming gradient (bias
gradient) and of gradient x normalised input (scale gradient and dx). XLA:CPU emits each of these
minor-dimension-keeping reductions as a slow scalar loop (see jaxgen/nn/linear.py). Here all four go
through `jaxgen.nn.linear.sum_rows` (a matrix-vector product with a ones vector on CPU), and the
backward pass is the closed form (two reductions) instead of autodiff's chain through the mean and
variance.

Semantics kept from flax (so an existing checkpoint loads unchanged and the numbers agree to float32
round-off): params "scale" and "bias" [C] (created in that order, so the same init keys give the same
values), running statistics "mean" and "var" [C] float32 in the "batch_stats" collection, updated as
`momentum * running + (1 - momentum) * batch` in training (not while initialising), the biased batch
variance, statistics and normalisation in float32 for any input dtype, output in `dtype`.
"""
import functools
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.nn.blocks import group_norm
from jaxgen.nn.linear import sum_rows


def instance_norm(x: jax.Array, epsilon: float = 1e-5) -> jax.Array:
  """Instance normalisation without an affine transform or running statistics (PyTorch's
  InstanceNorm2d defaults, as CycleGAN uses it): each example's channel normalised over H, W.

  GroupNorm with one channel per group, so it shares GroupNorm's float32 statistics and closed-form
  gradient. x [B, H, W, C] any float dtype -> float32 [B, H, W, C].
  """
  c = x.shape[-1]
  return group_norm(x, jnp.ones((c,), jnp.float32), jnp.zeros((c,), jnp.float32), c, epsilon, False)


def _stats(x2: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Mean and biased variance [C] of x2 float32 [N, C] over N, two-pass: E[(x - mean)^2] keeps the
  digits that flax's one-pass E[x^2] - E[x]^2 loses when |mean| >> std, at the same cost here."""
  n = x2.shape[0]
  mean = sum_rows(x2) / n
  var = sum_rows(jnp.square(x2 - mean)) / n
  return mean, var


def _batch_norm_fwd(x, scale, bias, epsilon):
  c = x.shape[-1]
  x2 = x.reshape(-1, c).astype(jnp.float32)
  mean, var = _stats(x2)
  rstd = jax.lax.rsqrt(var + epsilon)
  y = (x2 - mean) * (rstd * scale) + bias
  return (y.reshape(x.shape), mean, var), (x, scale, mean, rstd)


def _batch_norm_bwd(epsilon, res, cotangents):
  """dx = scale * rstd * (g - mean(g) - xhat * mean(g * xhat)), dscale = sum(g * xhat),
  dbias = sum(g); plus the (usually zero) cotangents of the returned mean and variance."""
  del epsilon
  x, scale, mean, rstd = res
  g, g_mean, g_var = cotangents
  n, c = x.size // x.shape[-1], x.shape[-1]
  xc = x.reshape(-1, c).astype(jnp.float32) - mean
  xhat = xc * rstd
  g = g.reshape(-1, c).astype(jnp.float32)
  dbias = sum_rows(g)
  dscale = sum_rows(g * xhat)
  dx = (scale * rstd) * (g - dbias / n - xhat * (dscale / n))
  # d mean / dx = 1 / n and d var / dx = 2 (x - mean) / n (the mean's own gradient cancels out of
  # the variance's because sum(x - mean) = 0).
  dx = dx + g_mean / n + xc * (2.0 * g_var / n)
  return dx.reshape(x.shape).astype(x.dtype), dscale.astype(scale.dtype), dbias.astype(scale.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_train(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float
                     ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Training-mode batch normalisation over all axes but the last, with a closed-form gradient.

  Args:
    x: [..., C], any float dtype (statistics are float32).
    scale, bias: float32 [C].
    epsilon: added to the variance.

  Returns:
    (y float32 [..., C] = (x - mean) / sqrt(var + epsilon) * scale + bias, mean float32 [C],
    var float32 [C] (biased: divided by the number of reduced elements)).
  """
  return _batch_norm_fwd(x, scale, bias, epsilon)[0]


batch_norm_train.defvjp(_batch_norm_fwd, _batch_norm_bwd)


class BatchNorm(nn.Module):
  """Drop-in for `flax.linen.BatchNorm` over the last axis (axis=-1, no axis_name or mask).

  [B, ..., C] -> [B, ..., C] in `dtype` (None: the result type of the input and float32 params, as
  in flax). With use_running_average=False the batch statistics normalise x and update the running
  averages in "batch_stats" (when that collection is mutable and not initialising); with True the
  running averages are used and nothing is written.

  Attributes:
    use_running_average: as in flax; may instead be passed to __call__.
    momentum: running = momentum * running + (1 - momentum) * batch statistic.
    epsilon: added to the variance.
    dtype: output dtype; statistics and normalisation are float32.
    param_dtype: dtype of scale and bias (float32 in every jaxgen model).
    use_bias, use_scale: learn a bias / scale.
    bias_init, scale_init: their initialisers.
  """
  use_running_average: Optional[bool] = None
  momentum: float = 0.99
  epsilon: float = 1e-5
  dtype: Any = None
  param_dtype: Any = jnp.float32
  use_bias: bool = True
  use_scale: bool = True
  bias_init: Callable[..., Any] = nn.initializers.zeros
  scale_init: Callable[..., Any] = nn.initializers.ones

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: Optional[bool] = None) -> jax.Array:
    use_running_average = nn.merge_param("use_running_average", self.use_running_average,
                                         use_running_average)
    c = x.shape[-1]
    ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), (c,))
    ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), (c,))
    # Same creation order as flax (scale, then bias), so the same key gives the same values.
    scale = (self.param("scale", self.scale_init, (c,), self.param_dtype).astype(jnp.float32)
             if self.use_scale else jnp.ones((c,), jnp.float32))
    bias = (self.param("bias", self.bias_init, (c,), self.param_dtype).astype(jnp.float32)
            if self.use_bias else jnp.zeros((c,), jnp.float32))
    dtype = self.dtype or jnp.result_type(x, self.param_dtype)
    if use_running_average:
      mul = jax.lax.rsqrt(ra_var.value + self.epsilon) * scale
      return ((x.astype(jnp.float32) - ra_mean.value) * mul + bias).astype(dtype)
    y, mean, var = batch_norm_train(x, scale, bias, self.epsilon)
    if not self.is_initializing():
      ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
      ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    return y.astype(dtype)
