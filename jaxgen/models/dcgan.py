"""DCGAN generator and discriminator (Radford, Metz & Chintala 2016, arXiv:1511.06434).

The paper's architecture guidelines, as implemented here:
  * no pooling: strided convolutions downsample in D, fractionally-strided (transposed) convolutions
    upsample in G, all with 4x4 kernels and stride 2;
  * BatchNorm in both players, except on D's input layer and G's output layer;
  * ReLU in G with tanh on the output; LeakyReLU(0.2) in D;
  * no fully connected hidden layers: z is projected to a 4x4 feature map (one matmul, "project and
    reshape") and D's last 4x4 feature map is flattened into one logit;
  * all weights drawn from N(0, 0.02).

Depth follows the image size: log2(image_size / 4) resolution-doubling stages, so 64x64 (the paper's
LSUN model) is 4x4x1024 -> 8x8x512 -> 16x16x256 -> 32x32x128 -> 64x64x3 with `features=128`.
"""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.nn.conv import ConvTranspose2x
from jaxgen.nn.linear import Conv
from jaxgen.nn.norm import BatchNorm

# The paper: "All weights were initialized from a zero-centered Normal distribution with standard
# deviation 0.02."
_INIT = nn.initializers.normal(stddev=0.02)
# BatchNorm scales as in the authors' and PyTorch's reference code: N(1, 0.02).
_SCALE_INIT = lambda key, shape, dtype=jnp.float32: 1.0 + _INIT(key, shape, dtype)  # noqa: E731
# Kernel 4, stride 2, one pixel of padding (PyTorch's padding=1): exactly halves the size in D. G's
# transposed convolutions are the mirror image (2 pixels of padding on the dilated input, exactly
# doubling the size): jaxgen.nn.conv.ConvTranspose2x, computed sub-pixel style. jaxgen.nn.linear.Conv
# (flax's params) runs D's layers as jaxgen.nn.conv.conv_4x4_s2, whose input gradient is that
# sub-pixel transposed convolution.
_DOWN_PAD = ((1, 1), (1, 1))


def num_stages(image_size: int) -> int:
  """Resolution-doubling stages between the 4x4 base and `image_size` (a power of two >= 16)."""
  return int(math.log2(image_size)) - 2


def _batch_norm(train: bool, dtype, name: str) -> BatchNorm:
  # jaxgen.nn.norm.BatchNorm: flax.linen.BatchNorm's params, "batch_stats" and float32 statistics for
  # bfloat16 inputs, with its reductions as matrix-vector products (7x faster forward + backward on
  # CPU at 128x16x16x128). Momentum 0.9 and eps 1e-5 match PyTorch's BatchNorm defaults used by the
  # reference implementations.
  return BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
                   param_dtype=jnp.float32, scale_init=_SCALE_INIT, name=name)


class Generator(nn.Module):
  """z [B, z_dim] -> images float32 [B, image_size, image_size, channels] in [-1, 1].

  Attributes:
    image_size: output side, a power of two >= 16.
    channels: output channels (1 or 3).
    features: channels of the last hidden layer (PyTorch's "ngf"); each earlier stage doubles it.
    dtype: compute dtype; params are float32.
  """
  image_size: int
  channels: int
  features: int = 128
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array, train: bool) -> jax.Array:
    n = num_stages(self.image_size)
    width = self.features * 2 ** (n - 1)
    # Project and reshape. No bias: the BatchNorm right after would cancel it.
    x = nn.Dense(4 * 4 * width, use_bias=False, kernel_init=_INIT, dtype=self.dtype,
                 param_dtype=jnp.float32, name="project")(z.astype(self.dtype))
    x = x.reshape(z.shape[0], 4, 4, width)
    x = nn.relu(_batch_norm(train, self.dtype, "project_bn")(x))
    for i in range(1, n):
      width //= 2
      x = ConvTranspose2x(width, use_bias=False, kernel_init=_INIT, dtype=self.dtype, name=f"up{i}")(x)
      x = nn.relu(_batch_norm(train, self.dtype, f"up{i}_bn")(x))
    # Output layer: no BatchNorm (so it keeps a bias), tanh into [-1, 1].
    x = ConvTranspose2x(self.channels, kernel_init=_INIT, dtype=self.dtype, name="to_image")(x)
    return jnp.tanh(x.astype(jnp.float32))


class Discriminator(nn.Module):
  """images [B, image_size, image_size, channels] in [-1, 1] -> logits float32 [B].

  Attributes:
    image_size: input side, a power of two >= 16.
    features: channels of the first layer (PyTorch's "ndf"); each later stage doubles it.
    dtype: compute dtype; params are float32.
  """
  image_size: int
  features: int = 128
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = x.astype(self.dtype)
    for i in range(num_stages(self.image_size)):
      # The input layer has no BatchNorm (paper: it caused sample oscillation) and so keeps a bias.
      first = i == 0
      x = Conv(self.features * 2 ** i, (4, 4), strides=(2, 2), padding=_DOWN_PAD,
               use_bias=first, kernel_init=_INIT, dtype=self.dtype, param_dtype=jnp.float32,
               name=f"down{i}")(x)
      if not first:
        x = _batch_norm(train, self.dtype, f"down{i}_bn")(x)
      x = nn.leaky_relu(x, 0.2)
    # 4x4 map -> one logit (the reference's 4x4 "valid" convolution is this matmul).
    x = nn.Dense(1, kernel_init=_INIT, dtype=self.dtype, param_dtype=jnp.float32,
                 name="logit")(x.reshape(x.shape[0], -1))
    return x[:, 0].astype(jnp.float32)
