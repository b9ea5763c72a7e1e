"""The "standard CNN" of SN-GAN (Miyato et al. 2018, Table 3), for CIFAR-10 (M = 32) and STL-10 (48).

G: z (128) ~ N(0, I) -> dense -> Mg x Mg x 512 (Mg = M / 8) -> three 4x4 stride-2 deconvolutions with
   BatchNorm and ReLU (256, 128, 64) -> 3x3 stride-1 convolution to 3 channels -> tanh.
   (BatchNorm + ReLU after the dense layer too, as the authors' DCGANGenerator.)
D: 3x3 s1 conv 64, 4x4 s2 conv 64, 3x3 s1 128, 4x4 s2 128, 3x3 s1 256, 4x4 s2 256, 3x3 s1 512, all
   LeakyReLU(0.1), no normalisation but spectral normalisation of every weight; then dense -> 1.
   The trunk here ends at the flattened Mb x Mb x 512 features (Mb = M / 8): the dense output layer
   is the shared "logit" head (jaxgen.gan.heads), spectrally normalised with the trunk.
Weights N(0, 0.02) as the authors' code. `spectral=False` is the same network without
normalisation: SN-GAN's Table 2 trains WGAN-GP (gradient penalty, no SN) on it.
"""
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.gan.heads import concat_condition
from jaxgen.nn.conv import ConvTranspose2x
from jaxgen.nn.linear import Conv, Dense
from jaxgen.nn.norm import BatchNorm
from jaxgen.nn.spectral import SNConv

_INIT = nn.initializers.normal(stddev=0.02)


def batch_norm(train: bool, dtype, name: str) -> BatchNorm:
  """BatchNorm of the GAN models here: momentum 0.9 and eps 1e-5 (PyTorch's defaults, as the
  reference implementations), statistics in float32; jaxgen.nn.norm's (flax's params and
  batch_stats, reductions as matrix-vector products)."""
  return BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
                      param_dtype=jnp.float32, name=name)


class Generator(nn.Module):
  """z [B, z_in] -> images float32 [B, image_size, image_size, channels] in [-1, 1].

  Attributes:
    image_size: output side, a multiple of 8 (32 for CIFAR-10).
    channels: output channels.
    width: channels of the Mg x Mg base (paper: 512); halved by each deconvolution.
    dtype: compute dtype; params are float32.
  """
  image_size: int
  channels: int = 3
  width: int = 512
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array, train: bool) -> jax.Array:
    mg = self.image_size // 8
    x = Dense(mg * mg * self.width, kernel_init=_INIT, dtype=self.dtype, name="project")(z.astype(self.dtype))
    x = nn.relu(batch_norm(train, self.dtype, "project_bn")(x.reshape(z.shape[0], mg, mg, self.width)))
    width = self.width
    for i in range(3):
      width //= 2
      x = ConvTranspose2x(width, kernel_init=_INIT, dtype=self.dtype, name=f"up{i}")(x)
      x = nn.relu(batch_norm(train, self.dtype, f"up{i}_bn")(x))
    x = Conv(self.channels, (3, 3), padding=((1, 1), (1, 1)), kernel_init=_INIT, dtype=self.dtype,
             name="to_image")(x)
    return jnp.tanh(x.astype(jnp.float32))


class DiscriminatorTrunk(nn.Module):
  """images [B, M, M, C] -> features [B, (M/8)^2 * 8 width] (jaxgen.gan.heads trunk interface).

  Attributes:
    width: channels of the first two convolutions (paper: 64); doubled twice, then 8x at the end.
    spectral: spectral normalisation of every convolution (SN-GAN); False for WGAN-GP.
    dtype: compute dtype; params are float32.
  """
  width: int = 64
  spectral: bool = True
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, cond: Optional[jax.Array] = None) -> jax.Array:
    x = concat_condition(x.astype(self.dtype), cond)
    w = self.width
    # (features, kernel, stride) of Table 3(b).
    layers = [(w, 3, 1), (w, 4, 2), (2 * w, 3, 1), (2 * w, 4, 2), (4 * w, 3, 1), (4 * w, 4, 2),
              (8 * w, 3, 1)]
    for i, (features, k, s) in enumerate(layers):
      x = SNConv(features, (k, k), strides=s, padding=((1, 1), (1, 1)), spectral=self.spectral,
                 kernel_init=_INIT, dtype=self.dtype, name=f"conv{i}")(x, train)
      x = nn.leaky_relu(x, 0.1)
    return x.reshape(x.shape[0], -1)
