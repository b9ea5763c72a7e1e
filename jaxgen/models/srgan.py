"""SRResNet generator and SRGAN discriminator (Ledig et al. 2017, arXiv:1609.04802, Fig. 4).

Generator (SRResNet), for an upscaling factor f = 2^k (the paper: 4, k = 2):
  9x9 conv (64) + PReLU                                          -> h
  B residual blocks: 3x3 conv - BN - PReLU - 3x3 conv - BN, + skip (the paper: B = 16)
  3x3 conv - BN, + h (the long skip)
  k sub-pixel x2 upsamplers: 3x3 conv (256) - pixel shuffle x2 - PReLU
  9x9 conv to the image channels (no activation: a regression output in about [-1, 1])
The paper scales low-resolution inputs to [0, 1] and high-resolution targets to [-1, 1]; inputs
arrive here in [-1, 1] (as every jaxgen image) and are mapped to [0, 1] first.

Discriminator: eight 3x3 convs with 64, 64, 128, 128, 256, 256, 512, 512 features and strides
1, 2, 1, 2, 1, 2, 1, 2, BatchNorm after all but the first, LeakyReLU(0.2) after each, then dense
1024, LeakyReLU(0.2), dense 1 (a logit; the paper's sigmoid is inside the loss). Its input side must
be a multiple of 16 (four stride-2 convs before the flatten), 96 in the paper (6x6x512 flattened).

PReLU (He et al. 2015) has one slope per channel, initialised to 0.25. BatchNorm uses PyTorch's
momentum 0.1 (flax momentum 0.9) and eps 1e-5, as the reference re-implementations.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.nn.linear import Conv, Dense, sum_rows
from jaxgen.nn.norm import BatchNorm
from jaxgen.nn.subpixel import pixel_shuffle


@jax.custom_vjp
def prelu(x: jax.Array, alpha: jax.Array) -> jax.Array:
  """x where x >= 0, alpha * x elsewhere; x [..., C], alpha [C]."""
  return jnp.where(x >= 0, x, alpha.astype(x.dtype) * x)


def _prelu_fwd(x, alpha):
  return prelu(x, alpha), (x, alpha)


def _prelu_bwd(res, g):
  x, alpha = res
  # The slope's gradient sums over batch and pixels: a matrix-vector product on CPU (nn.linear).
  return (jnp.where(x >= 0, g, alpha.astype(g.dtype) * g),
          sum_rows(jnp.minimum(x, 0) * g).astype(alpha.dtype))


prelu.defvjp(_prelu_fwd, _prelu_bwd)


class PReLU(nn.Module):
  """Parametric ReLU with one learned slope per channel (param "alpha" [C])."""
  init: float = 0.25

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    alpha = self.param("alpha", nn.initializers.constant(self.init), (x.shape[-1],), jnp.float32)
    return prelu(x, alpha)


def _batch_norm(train: bool, dtype: Any, name: str) -> BatchNorm:
  return BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
                   param_dtype=jnp.float32, name=name)


def _conv(features: int, kernel: int, dtype: Any, name: str, stride: int = 1,
          use_bias: bool = True) -> Conv:
  pad = kernel // 2
  return Conv(features, (kernel, kernel), strides=stride, padding=((pad, pad), (pad, pad)),
              use_bias=use_bias, dtype=dtype, name=name)


class ResidualBlock(nn.Module):
  """x + BN(conv(PReLU(BN(conv(x))))); [B, H, W, features] -> same."""
  features: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    # No conv biases before BatchNorm: its mean subtraction would cancel them.
    h = _conv(self.features, 3, self.dtype, "conv1", use_bias=False)(x)
    h = PReLU(name="prelu")(_batch_norm(train, self.dtype, "bn1")(h))
    h = _conv(self.features, 3, self.dtype, "conv2", use_bias=False)(h)
    return x + _batch_norm(train, self.dtype, "bn2")(h)


class SRResNet(nn.Module):
  """low_res [B, h, w, C] in [-1, 1] -> float32 [B, h * upscale, w * upscale, C] (about [-1, 1]).

  Attributes:
    channels: image channels (3 in the paper).
    upscale: a power of two >= 2 (log2(upscale) sub-pixel x2 stages; the paper: 4).
    features: width of the trunk (64).
    num_blocks: residual blocks (16).
    dtype: compute dtype; params are float32.
  """
  channels: int = 3
  upscale: int = 4
  features: int = 64
  num_blocks: int = 16
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, low_res: jax.Array, train: bool) -> jax.Array:
    x = ((low_res.astype(jnp.float32) + 1.0) * 0.5).astype(self.dtype)   # the paper's [0, 1] inputs
    h = PReLU(name="head_prelu")(_conv(self.features, 9, self.dtype, "head")(x))
    y = h
    for i in range(self.num_blocks):
      y = ResidualBlock(self.features, self.dtype, name=f"block{i}")(y, train)
    y = _conv(self.features, 3, self.dtype, "body_conv", use_bias=False)(y)
    y = h + _batch_norm(train, self.dtype, "body_bn")(y)
    for i in range(self.upscale.bit_length() - 1):
      y = _conv(4 * self.features, 3, self.dtype, f"up{i}")(y)
      y = PReLU(name=f"up{i}_prelu")(pixel_shuffle(y, 2))
    return _conv(self.channels, 9, self.dtype, "to_image")(y).astype(jnp.float32)


class Discriminator(nn.Module):
  """images [B, H, W, C] in [-1, 1] (H, W multiples of 16) -> logits float32 [B].

  Attributes:
    features: the first convs' width (64); it doubles every two convs up to 8x.
    dense: the hidden dense layer's width (1024).
    dtype: compute dtype; params are float32.
  """
  features: int = 64
  dense: int = 1024
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = x.astype(self.dtype)
    for i in range(8):
      width, stride = self.features * 2 ** (i // 2), 1 + i % 2
      x = _conv(width, 3, self.dtype, f"conv{i}", stride=stride, use_bias=i == 0)(x)
      if i:
        x = _batch_norm(train, self.dtype, f"bn{i}")(x)
      x = nn.leaky_relu(x, 0.2)
    x = Dense(self.dense, dtype=self.dtype, name="dense")(x.reshape(x.shape[0], -1))
    x = Dense(1, dtype=self.dtype, name="logit")(nn.leaky_relu(x, 0.2))
    return x[:, 0].astype(jnp.float32)
