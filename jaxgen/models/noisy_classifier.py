"""Time-conditioned classifier of noisy images x_t, for classifier guidance (Dhariwal & Nichol 2021).

As the paper's classifier, it is the downsampling half of the diffusion U-Net (residual blocks that
take the timestep embedding) followed by a pooled linear head; this one uses mean pooling instead of
the paper's attention pooling and no attention layers, which keeps it small for CIFAR-sized images.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxgen.nn.blocks import Downsample, GroupNorm, ResnetBlock, conv3x3, ddpm_init
from jaxgen.nn.dtypes import parse_dtype
from jaxgen.nn.embeddings import timestep_embedding
from jaxgen.nn.linear import Dense



class NoisyClassifier(nn.Module):
  """(x_t [B, H, W, C], t [B]) -> logits float32 [B, num_classes].

  Attributes:
    num_classes: number of classes.
    ch: base channel count; level i has ch * ch_mult[i] channels.
    ch_mult: channel multiplier per level; the image side must divide by 2 ** (len(ch_mult) - 1).
    num_res_blocks: residual blocks per level.
    dropout: dropout rate in the residual blocks (rng collection "dropout").
    num_groups: GroupNorm groups (divides every channel count).
    dtype: compute dtype; params, normalisation statistics and logits are float32.
  """
  num_classes: int
  ch: int = 128
  ch_mult: tuple[int, ...] = (1, 2, 2, 2)
  num_res_blocks: int = 2
  dropout: float = 0.0
  num_groups: int = 32
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, t: jax.Array, *, train: bool) -> jax.Array:
    factor = 2 ** (len(self.ch_mult) - 1)
    if x.shape[1] % factor or x.shape[2] % factor:
      raise ValueError(f"NoisyClassifier: image size {x.shape[1]}x{x.shape[2]} is not divisible by "
                       f"2**(len(ch_mult)-1) = {factor} (ch_mult={self.ch_mult}); use fewer levels.")
    temb_dim = 4 * self.ch
    temb = timestep_embedding(t, self.ch)
    temb = Dense(temb_dim, dtype=self.dtype, param_dtype=jnp.float32, kernel_init=ddpm_init(),
               name="time_embed_1")(temb)
    temb = Dense(temb_dim, dtype=self.dtype, param_dtype=jnp.float32, kernel_init=ddpm_init(),
               name="time_embed_2")(nn.silu(temb))
    h = conv3x3(self.ch, self.dtype, "conv_in")(x.astype(self.dtype))
    for i, mult in enumerate(self.ch_mult):
      for j in range(self.num_res_blocks):
        h = ResnetBlock(self.ch * mult, self.dropout, self.num_groups, self.dtype,
                        name=f"down_{i}_res_{j}")(h, temb, train=train)
      if i < len(self.ch_mult) - 1:
        h = Downsample(self.dtype, name=f"down_{i}_downsample")(h)
    h = GroupNorm(self.num_groups, act=True, dtype=jnp.float32, name="norm_out")(h)
    h = jnp.mean(h, axis=(1, 2))
    return Dense(self.num_classes, dtype=jnp.float32, param_dtype=jnp.float32, name="head")(h)


def classifier_from_config(model_cfg: ml_collections.ConfigDict, num_classes: int) -> NoisyClassifier:
  """From config.model: ch, ch_mult, num_res_blocks, dropout, dtype, optional num_groups."""
  dtype = parse_dtype(model_cfg.get("dtype", "float32"))
  return NoisyClassifier(num_classes=num_classes, ch=model_cfg.ch, ch_mult=tuple(model_cfg.ch_mult),
                         num_res_blocks=model_cfg.num_res_blocks, dropout=model_cfg.dropout,
                         num_groups=model_cfg.get("num_groups", 32), dtype=dtype)
