"""Convolutional building blocks of diffusion U-Nets: GroupNorm(+SiLU), residual block, 2x resampling.

Layouts are NHWC. Parameters are float32; `dtype` is the compute dtype of convolutions and of the
activations passed between layers; normalisation statistics are always float32.

Initialisation follows DDPM (Ho et al. 2020): variance scaling (fan_avg, uniform) everywhere and a
(near-)zero scale on the last layer of each residual branch, so every block starts as the identity.
"""
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.nn.linear import Conv, Dense, sum_rows


def ddpm_init(scale: float = 1.0) -> nn.initializers.Initializer:
  """DDPM's `default_init`: variance_scaling(scale, fan_avg, uniform); scale 0 is replaced by 1e-10
  as in the original code (a zero scale is not allowed by variance scaling)."""
  return nn.initializers.variance_scaling(max(scale, 1e-10), "fan_avg", "uniform")


def _group_stats(x3: jax.Array, num_groups: int, epsilon: float) -> tuple[jax.Array, jax.Array]:
  """Mean and 1/std [B, 1, C] (equal within a group) over (H*W, channels of a group) of x3 [B, H*W, C],
  two-pass as PyTorch: the one-pass E[x^2] - E[x]^2 loses digits when |mean| >> std, which U-Net
  activations can reach."""
  b, m, c = x3.shape

  def group_mean(v):  # [B, M, C] -> [B, 1, C] mean over M and the channels of each group
    s = sum_rows(v, batch_dims=1).reshape(b, num_groups, c // num_groups).sum(-1) / (m * c // num_groups)
    return jnp.repeat(s, c // num_groups, axis=-1)[:, None, :]

  mean = group_mean(x3)
  var = group_mean(jnp.square(x3 - mean))
  return mean, jax.lax.rsqrt(var + epsilon)


def _group_norm_fwd(x, scale, bias, num_groups, epsilon, act):
  x3 = x.astype(jnp.float32).reshape(x.shape[0], -1, x.shape[-1])
  mean, rstd = _group_stats(x3, num_groups, epsilon)
  y = ((x3 - mean) * rstd * scale + bias).reshape(x.shape)
  return (nn.silu(y) if act else y), (x, scale, bias, mean, rstd)


def _group_norm_bwd(num_groups, epsilon, act, res, g):
  """The closed-form GroupNorm(+SiLU) gradient: 3 reductions instead of autodiff's longer chain
  (6 % of the DDPM CIFAR-10 training step on a 2-core CPU)."""
  del epsilon
  x, scale, bias, mean, rstd = res
  b, c = x.shape[0], x.shape[-1]
  xhat = (x.astype(jnp.float32).reshape(b, -1, c) - mean) * rstd
  g = g.reshape(xhat.shape)
  if act:   # d silu(y)/dy = sigmoid(y) (1 + y (1 - sigmoid(y)))
    y = xhat * scale + bias
    sig = jax.nn.sigmoid(y)
    g = g * sig * (1.0 + y * (1.0 - sig))
  gx = g * xhat
  gsum, gxsum = sum_rows(g, batch_dims=1), sum_rows(gx, batch_dims=1)   # [B, C]
  dscale, dbias = gxsum.sum(0), gsum.sum(0)
  m, cg = xhat.shape[1], c // num_groups

  def group_mean(v):  # [B, C] per-channel sums -> [B, 1, C] group means
    s = v.reshape(b, num_groups, cg).sum(-1) / (m * cg)
    return jnp.repeat(s, cg, axis=-1)[:, None, :]

  # dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) with dxhat = g * scale.
  dx = rstd * (g * scale - group_mean(gsum * scale) - xhat * group_mean(gxsum * scale))
  return dx.reshape(x.shape).astype(x.dtype), dscale, dbias


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def group_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, num_groups: int, epsilon: float,
               act: bool) -> jax.Array:
  """GroupNorm over (H, W, channels of a group), then optionally SiLU, with a hand-written gradient.

  Args:
    x: [B, ..., C], any float dtype; C divisible by num_groups.
    scale, bias: float32 [C].
    num_groups: number of channel groups.
    epsilon: added to the variance.
    act: apply SiLU to the normalised output.

  Returns:
    float32 [B, ..., C].
  """
  return _group_norm_fwd(x, scale, bias, num_groups, epsilon, act)[0]


group_norm.defvjp(_group_norm_fwd, _group_norm_bwd)


def dropout(x: jax.Array, rate: float, rng: jax.Array) -> jax.Array:
  """Inverted dropout from 16-bit random numbers, two per 32-bit word of the generator (dropout's RNG
  is a measurable part of a CPU training step); the keep probability is exact to 1/65536."""
  n = x.size
  words = jax.random.bits(rng, ((n + 1) // 2,), jnp.uint32)
  halves = jnp.stack([words & 0xFFFF, words >> 16], axis=-1).reshape(-1)[:n].reshape(x.shape)
  keep = halves >= round(rate * 65536)
  return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


class GroupNorm(nn.Module):
  """GroupNorm (affine, PyTorch's semantics and default eps) with an optional fused SiLU.

  Attributes:
    num_groups: channel groups; the channel count must be divisible by it.
    epsilon: added to the variance (PyTorch's default 1e-5).
    act: apply SiLU after the affine transform (one fused pass instead of two).
    dtype: output dtype; statistics are computed in float32.
  """
  num_groups: int = 32
  epsilon: float = 1e-5
  act: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    if c % self.num_groups:
      raise ValueError(f"GroupNorm: {c} channels are not divisible by num_groups={self.num_groups}; "
                       "choose channel counts that are multiples of num_groups.")
    scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
    return group_norm(x, scale, bias, self.num_groups, self.epsilon, self.act).astype(self.dtype)


def conv3x3(features: int, dtype: Any, name: str, *, strides: int = 1,
            init_scale: float = 1.0) -> Conv:
  """3x3 convolution with one pixel of zero padding on every side (PyTorch's padding=1)."""
  return Conv(features, (3, 3), strides=strides, padding=((1, 1), (1, 1)), dtype=dtype,
                 param_dtype=jnp.float32, kernel_init=ddpm_init(init_scale), name=name)


class ResnetBlock(nn.Module):
  """DDPM residual block: GN-SiLU-conv, + Dense(SiLU(temb)), GN-SiLU-dropout-conv, + skip.

  The skip is a 1x1 convolution when the channel count changes (diffusers' `conv_shortcut`).

  Attributes:
    features: output channels.
    dropout: dropout rate before the second convolution (rng collection "dropout").
    num_groups: GroupNorm groups.
    dtype: compute dtype.
  """
  features: int
  dropout: float = 0.0
  num_groups: int = 32
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, temb: jax.Array, *, train: bool) -> jax.Array:
    """x [B, H, W, C_in], temb [B, D] (before SiLU) -> [B, H, W, features] in `dtype`."""
    h = GroupNorm(self.num_groups, act=True, dtype=self.dtype, name="norm1")(x)
    h = conv3x3(self.features, self.dtype, "conv1")(h)
    t = Dense(self.features, dtype=self.dtype, param_dtype=jnp.float32,
                 kernel_init=ddpm_init(), name="time_emb_proj")(nn.silu(temb))
    h = h + t[:, None, None, :]
    h = GroupNorm(self.num_groups, act=True, dtype=self.dtype, name="norm2")(h)
    if train and self.dropout > 0:
      h = dropout(h, self.dropout, self.make_rng("dropout"))
    h = conv3x3(self.features, self.dtype, "conv2", init_scale=0.0)(h)
    if x.shape[-1] != self.features:
      x = Conv(self.features, (1, 1), padding="VALID", dtype=self.dtype, param_dtype=jnp.float32,
                  kernel_init=ddpm_init(), name="conv_shortcut")(x)
    return x.astype(self.dtype) + h


class Downsample(nn.Module):
  """Stride-2 3x3 convolution with padding 1: [B, H, W, C] -> [B, ceil(H/2), ceil(W/2), C]."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return conv3x3(x.shape[-1], self.dtype, "conv", strides=2)(x)


class Upsample(nn.Module):
  """Nearest-neighbour 2x upsampling then a 3x3 convolution: [B, H, W, C] -> [B, 2H, 2W, C]."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, h, w, c = x.shape
    # Broadcast + reshape is nearest-neighbour upsampling without a gather.
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c)).reshape(b, 2 * h, 2 * w, c)
    return conv3x3(c, self.dtype, "conv")(x)
