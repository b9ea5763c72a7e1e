"""The DDPM U-Net (Ho, Jain & Abbeel 2020, arXiv:2006.11239), layer for layer as diffusers' UNet2DModel.

With the defaults (ch 128, ch_mult (1, 2, 2, 2), 2 residual blocks per resolution, attention at
16x16, GroupNorm(32), dropout 0.1) on 32x32x3 images this is the paper's CIFAR-10 network:
35,746,307 parameters, exactly the count of diffusers' UNet2DModel built with
("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D") / ("UpBlock2D", "UpBlock2D",
"AttnUpBlock2D", "UpBlock2D"), attention_head_dim=None (one head). `params_from_diffusers` converts
such a model's state dict to this module's params (tests/test_unet.py checks outputs equal to 5e-7).

Structure (resolution level i has ch * ch_mult[i] channels; "attn" where the level's side is in
attn_resolutions):
  conv_in -> for each level: num_res_blocks x (ResnetBlock [+ attn]), then a stride-2 conv except at
  the last level; every output is kept as a skip -> mid: ResnetBlock, attn, ResnetBlock ->
  for each level, lowest first: (num_res_blocks + 1) x (concat skip, ResnetBlock [+ attn]), then
  nearest 2x upsampling + conv except at the top level -> GroupNorm, SiLU, conv_out.
The time embedding is sinusoidal(t, ch) -> Dense(4 ch) -> SiLU -> Dense(4 ch) (diffusers' defaults:
cos first, no frequency shift); a class embedding, if any, is added to it.
"""
import re
from typing import Any, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxgen.nn.attention import SpatialSelfAttention
from jaxgen.nn.blocks import Downsample, GroupNorm, ResnetBlock, Upsample, ddpm_init
from jaxgen.nn.dtypes import parse_dtype
from jaxgen.nn.embeddings import timestep_embedding
from jaxgen.nn.linear import Conv, Dense



class UNet(nn.Module):
  """Noise-prediction U-Net: (x_t, t, y) -> output of the same spatial size.

  Attributes:
    ch: base channel count.
    ch_mult: channel multiplier per resolution level; the image side must be divisible by
      2 ** (len(ch_mult) - 1).
    num_res_blocks: residual blocks per level on the way down (one more on the way up).
    attn_resolutions: feature-map sides (e.g. 16) at which self-attention follows each block.
    dropout: dropout rate in the residual blocks (rng collection "dropout", only with train=True).
    out_channels: output channels.
    num_classes: 0 = unconditional; else a class embedding of num_classes + 1 rows is added to the
      time embedding; the last row (label num_classes) is the "null" label of classifier-free
      guidance.
    num_groups: GroupNorm groups; every channel count must be divisible by it.
    dtype: compute dtype; params are float32, GroupNorm statistics and the output float32.
  """
  ch: int = 128
  ch_mult: tuple[int, ...] = (1, 2, 2, 2)
  num_res_blocks: int = 2
  attn_resolutions: tuple[int, ...] = (16,)
  dropout: float = 0.1
  out_channels: int = 3
  num_classes: int = 0
  num_groups: int = 32
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, t: jax.Array, y: Optional[jax.Array] = None, *,
               train: bool) -> jax.Array:
    """Runs the network.

    Args:
      x: float [B, H, W, C] noisy images (any channel count C).
      t: [B] timesteps, int or float (DDPM: 0 .. T-1).
      y: int32 [B] labels in [0, num_classes] (num_classes = null label), or None. With
        num_classes > 0, None means the null label for every example.
      train: enables dropout.

    Returns:
      float32 [B, H, W, out_channels].
    """
    b, height, width, _ = x.shape
    levels = len(self.ch_mult)
    factor = 2 ** (levels - 1)
    if height % factor or width % factor:
      raise ValueError(f"UNet: image size {height}x{width} is not divisible by 2**(len(ch_mult)-1)"
                       f" = {factor} (ch_mult={self.ch_mult}); pad the images or use fewer levels.")
    if t.shape != (b,):
      raise ValueError(f"UNet: timesteps must have shape [B]=({b},), got {t.shape}.")
    if y is not None and not self.num_classes:
      raise ValueError("UNet: labels y were given to an unconditional model (num_classes=0); pass "
                       "y=None or set num_classes.")

    temb_dim = 4 * self.ch
    dense = lambda name: Dense(temb_dim, dtype=self.dtype, param_dtype=jnp.float32,  # noqa: E731
                                  kernel_init=ddpm_init(), name=name)
    temb = timestep_embedding(t, self.ch)
    temb = dense("time_embed_2")(nn.silu(dense("time_embed_1")(temb)))
    if self.num_classes:
      if y is None:
        y = jnp.full((b,), self.num_classes, jnp.int32)
      temb = temb + nn.Embed(self.num_classes + 1, temb_dim, dtype=self.dtype,
                             param_dtype=jnp.float32, name="class_embed")(y)

    def res_block(h, features, name):
      return ResnetBlock(features, self.dropout, self.num_groups, self.dtype, name=name)(
          h, temb, train=train)

    def attention(h, name):
      return SpatialSelfAttention(1, self.num_groups, self.dtype, name=name)(h)

    h = Conv(self.ch, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
                param_dtype=jnp.float32, kernel_init=ddpm_init(), name="conv_in")(x.astype(self.dtype))
    skips = [h]
    side = height
    for i, mult in enumerate(self.ch_mult):
      for j in range(self.num_res_blocks):
        h = res_block(h, self.ch * mult, f"down_{i}_res_{j}")
        if side in self.attn_resolutions:
          h = attention(h, f"down_{i}_attn_{j}")
        skips.append(h)
      if i < levels - 1:
        h = Downsample(self.dtype, name=f"down_{i}_downsample")(h)
        skips.append(h)
        side //= 2

    h = res_block(h, h.shape[-1], "mid_res_0")
    h = attention(h, "mid_attn")
    h = res_block(h, h.shape[-1], "mid_res_1")

    for i in reversed(range(levels)):
      for j in range(self.num_res_blocks + 1):
        h = res_block(jnp.concatenate([h, skips.pop()], axis=-1), self.ch * self.ch_mult[i],
                      f"up_{i}_res_{j}")
        if side in self.attn_resolutions:
          h = attention(h, f"up_{i}_attn_{j}")
      if i > 0:
        h = Upsample(self.dtype, name=f"up_{i}_upsample")(h)
        side *= 2

    h = GroupNorm(self.num_groups, act=True, dtype=self.dtype, name="norm_out")(h)
    h = Conv(self.out_channels, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
                param_dtype=jnp.float32, kernel_init=ddpm_init(0.0), name="conv_out")(h)
    return h.astype(jnp.float32)


def unet_from_config(model_cfg: ml_collections.ConfigDict, image_channels: int,
                     num_classes: int) -> UNet:
  """UNet from config.model: ch, ch_mult, num_res_blocks, attn_resolutions, dropout, dtype
  ("float32" | "bfloat16"), optional num_groups (default 32). Predicts `image_channels` outputs."""
  dtype = parse_dtype(model_cfg.get("dtype", "float32"))
  return UNet(ch=model_cfg.ch, ch_mult=tuple(model_cfg.ch_mult),
              num_res_blocks=model_cfg.num_res_blocks,
              attn_resolutions=tuple(model_cfg.attn_resolutions), dropout=model_cfg.dropout,
              out_channels=image_channels, num_classes=num_classes,
              num_groups=model_cfg.get("num_groups", 32), dtype=dtype)


def _diffusers_name(key: str, num_levels: int) -> tuple[str, ...]:
  """diffusers module path (without .weight/.bias) -> path of the Flax module in UNet's params."""
  rules = [
      (r"time_embedding\.linear_(\d)", lambda m: (f"time_embed_{m[1]}",)),
      (r"class_embedding", lambda m: ("class_embed",)),
      (r"conv_norm_out", lambda m: ("norm_out",)),
      (r"(conv_in|conv_out)", lambda m: (m[1],)),
      (r"down_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)", lambda m: (f"down_{m[1]}_res_{m[2]}", m[3])),
      (r"down_blocks\.(\d+)\.attentions\.(\d+)\.(\w+)(\.0)?",
       lambda m: (f"down_{m[1]}_attn_{m[2]}", m[3])),
      (r"down_blocks\.(\d+)\.downsamplers\.0\.conv", lambda m: (f"down_{m[1]}_downsample", "conv")),
      (r"mid_block\.resnets\.(\d+)\.(\w+)", lambda m: (f"mid_res_{m[1]}", m[2])),
      (r"mid_block\.attentions\.0\.(\w+)(\.0)?", lambda m: ("mid_attn", m[1])),
      # diffusers numbers up blocks from the lowest resolution; UNet names them by level.
      (r"up_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)",
       lambda m: (f"up_{num_levels - 1 - int(m[1])}_res_{m[2]}", m[3])),
      (r"up_blocks\.(\d+)\.attentions\.(\d+)\.(\w+)(\.0)?",
       lambda m: (f"up_{num_levels - 1 - int(m[1])}_attn_{m[2]}", m[3])),
      (r"up_blocks\.(\d+)\.upsamplers\.0\.conv",
       lambda m: (f"up_{num_levels - 1 - int(m[1])}_upsample", "conv")),
  ]
  for pattern, path in rules:
    m = re.fullmatch(pattern, key)
    if m:
      return path(m)
  raise ValueError(f"params_from_diffusers: no UNet module for the diffusers parameter {key!r}; "
                   "only UNet2DModel with (Attn)DownBlock2D / (Attn)UpBlock2D is supported.")


def params_from_diffusers(state_dict: Mapping[str, np.ndarray], num_levels: int) -> dict:
  """Converts a diffusers UNet2DModel state dict (arrays in PyTorch layout) to UNet params.

  Args:
    state_dict: name -> array, e.g. {k: v.numpy() for k, v in model.state_dict().items()}.
    num_levels: len(block_out_channels) of the diffusers model (= len(ch_mult)).

  Returns:
    The float32 params pytree of the matching UNet (the "params" collection's contents).
  """
  params: dict = {}
  pending_qkv: dict = {}
  for full_key, value in state_dict.items():
    value = np.asarray(value, np.float32)
    key, leaf = full_key.rsplit(".", 1)
    path = _diffusers_name(key, num_levels)
    if path[-1] in ("group_norm", "norm1", "norm2") or path == ("norm_out",):
      leaf = {"weight": "scale", "bias": "bias"}[leaf]
    elif path == ("class_embed",):
      leaf = "embedding"
    elif leaf == "weight":
      # Conv (O, I, kh, kw) -> (kh, kw, I, O); Linear (O, I) -> (I, O).
      value = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T
      leaf = "kernel"
    if path[-1] in ("to_q", "to_k", "to_v"):
      pending_qkv.setdefault((path[:-1], leaf), {})[path[-1]] = value
      continue
    node = params
    for name in path:
      node = node.setdefault(name, {})
    node[leaf] = value
  for (path, leaf), parts in pending_qkv.items():
    node = params
    for name in path:
      node = node.setdefault(name, {})
    node.setdefault("qkv", {})[leaf] = np.concatenate(
        [parts["to_q"], parts["to_k"], parts["to_v"]], axis=-1)
  return params
