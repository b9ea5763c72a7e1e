"""InfoGAN's MNIST networks (Chen et al. 2016, Appendix C, Table 1), a DCGAN-style pair that the
AC-GAN and conditional-CNN configs reuse on MNIST.

G: input (noise + one-hot categorical code + continuous codes; 62 + 10 + 2 on MNIST) -> FC 1024
   BN ReLU -> FC (S/4)^2 x 128 BN ReLU -> 4x4 stride-2 deconvolution 64 BN ReLU -> 4x4 stride-2
   deconvolution to 1 channel (tanh here, images in [-1, 1]), S = 28.
D: 4x4 stride-2 conv 64 lReLU -> 4x4 stride-2 conv 128 BN lReLU -> FC 1024 BN lReLU, leaky rate 0.1;
   this trunk's 1024 features feed the shared heads (jaxgen.gan.heads): D's output FC, and Q's
   FC 128 BN lReLU -> FC (the "q_hidden" head), or AC-GAN's class logits.
Weights N(0, 0.02) (the reference code's initialiser); BatchNorm statistics in float32.
"""
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.gan.heads import concat_condition
from jaxgen.models.sngan import batch_norm
from jaxgen.nn.conv import ConvTranspose2x
from jaxgen.nn.linear import Conv, Dense

_INIT = nn.initializers.normal(stddev=0.02)
_DOWN_PAD = ((1, 1), (1, 1))   # 4x4 stride 2, TF "SAME" on even sides: exactly halves


class Generator(nn.Module):
  """z [B, z_in] -> images float32 [B, image_size, image_size, channels] in [-1, 1].

  Attributes:
    image_size: output side, a multiple of 4 (28 for MNIST).
    channels: output channels.
    hidden: the first FC layer's width (paper: 1024).
    width: channels of the (S/4)^2 map (paper: 128); the deconvolution halves it.
    dtype: compute dtype; params are float32.
  """
  image_size: int = 28
  channels: int = 1
  hidden: int = 1024
  width: int = 128
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array, train: bool) -> jax.Array:
    s = self.image_size // 4
    # No biases before BatchNorm (it would cancel them).
    x = Dense(self.hidden, use_bias=False, kernel_init=_INIT, dtype=self.dtype, name="fc")(z.astype(self.dtype))
    x = nn.relu(batch_norm(train, self.dtype, "fc_bn")(x))
    x = Dense(s * s * self.width, use_bias=False, kernel_init=_INIT, dtype=self.dtype, name="project")(x)
    x = nn.relu(batch_norm(train, self.dtype, "project_bn")(x))
    x = x.reshape(z.shape[0], s, s, self.width)
    x = ConvTranspose2x(self.width // 2, use_bias=False, kernel_init=_INIT, dtype=self.dtype, name="up0")(x)
    x = nn.relu(batch_norm(train, self.dtype, "up0_bn")(x))
    x = ConvTranspose2x(self.channels, kernel_init=_INIT, dtype=self.dtype, name="to_image")(x)
    return jnp.tanh(x.astype(jnp.float32))


class DiscriminatorTrunk(nn.Module):
  """images [B, S, S, C] -> features [B, hidden] (jaxgen.gan.heads trunk interface).

  Attributes:
    width: channels of the first convolution (paper: 64); the second has twice as many.
    hidden: the FC layer's width (paper: 1024).
    dtype: compute dtype; params are float32.
  """
  width: int = 64
  hidden: int = 1024
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, cond: Optional[jax.Array] = None) -> jax.Array:
    x = concat_condition(x.astype(self.dtype), cond)
    x = Conv(self.width, (4, 4), strides=2, padding=_DOWN_PAD, kernel_init=_INIT, dtype=self.dtype,
             name="conv0")(x)
    x = nn.leaky_relu(x, 0.1)
    x = Conv(2 * self.width, (4, 4), strides=2, padding=_DOWN_PAD, use_bias=False, kernel_init=_INIT,
             dtype=self.dtype, name="conv1")(x)
    x = nn.leaky_relu(batch_norm(train, self.dtype, "conv1_bn")(x), 0.1)
    x = Dense(self.hidden, use_bias=False, kernel_init=_INIT, dtype=self.dtype,
              name="fc")(x.reshape(x.shape[0], -1))
    return nn.leaky_relu(batch_norm(train, self.dtype, "fc_bn")(x), 0.1)
