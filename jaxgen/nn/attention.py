"""Self-attention over the pixels of a feature map (the DDPM / diffusers U-Net attention block)."""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.nn.blocks import GroupNorm, ddpm_init
from jaxgen.nn.linear import Dense


class SpatialSelfAttention(nn.Module):
  """x + Proj(Attention(GroupNorm(x))) with every pixel attending to every pixel.

  Matches diffusers' `Attention(..., residual_connection=True, norm_num_groups=...)` on a 4-D input:
  GroupNorm, q/k/v projections with bias, softmax(q k^T / sqrt(head_dim)) v, output projection with
  bias, residual. q, k and v come from one fused [C, 3C] projection (one matmul instead of three).
  The attention itself is `jax.nn.dot_product_attention` with implementation=None, so XLA picks a
  fused kernel (cuDNN flash attention on GPU) where the backend has one.

  Attributes:
    num_heads: attention heads; C must be divisible by it (DDPM: 1).
    num_groups: GroupNorm groups.
    dtype: compute dtype.
  """
  num_heads: int = 1
  num_groups: int = 32
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x [B, H, W, C] -> [B, H, W, C] in `dtype`."""
    b, h, w, c = x.shape
    if c % self.num_heads:
      raise ValueError(f"SpatialSelfAttention: {c} channels are not divisible by "
                       f"num_heads={self.num_heads}.")
    y = GroupNorm(self.num_groups, dtype=self.dtype, name="group_norm")(x)
    qkv = Dense(3 * c, dtype=self.dtype, param_dtype=jnp.float32, kernel_init=ddpm_init(),
                   name="qkv")(y.reshape(b, h * w, c))
    q, k, v = jnp.split(qkv.reshape(b, h * w, 3 * self.num_heads, c // self.num_heads), 3, axis=2)
    y = jax.nn.dot_product_attention(q, k, v, implementation=None).reshape(b, h * w, c)
    y = Dense(c, dtype=self.dtype, param_dtype=jnp.float32, kernel_init=ddpm_init(0.0),
                 name="to_out")(y)
    return x.astype(self.dtype) + y.reshape(b, h, w, c)
