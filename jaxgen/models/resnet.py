"""ResNet encoders (He et al. 2016) and SimCLR's projection head (google-research/simclr tf2/resnet.py,
model.py).

ResNet-18 / 34 (basic blocks) and ResNet-50 / 101 / 152 (bottleneck blocks, stride on the 3x3 conv as
SimCLR's v1 ResNet), BatchNorm (jaxgen.nn.norm.BatchNorm; momentum 0.9, epsilon 1e-5 as SimCLR's
BATCH_NORM_DECAY / EPSILON; statistics in the "batch_stats" collection), the last BN of each residual
branch initialised to zero gain (SimCLR's init_zero). Stems:
  "cifar": 3x3 conv stride 1, no max-pool (SimCLR's CIFAR-10 setting, appendix B.9);
  "imagenet": 7x7 conv stride 2 + 3x3 max-pool stride 2.
Output: the global-average-pooled features h, float32 [B, width * 8 * expansion] (512 for ResNet-18,
2048 for ResNet-50).

ProjectionHead: SimCLR's 'nonlinear' head with num_proj_layers layers (2 = the paper's v1 MLP):
Dense (no bias) -> BN -> ReLU for the hidden layers (width = the input's), Dense (no bias) -> BN
without centre for the last, out_dim 128.
"""
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.nn.linear import Conv, Dense
from jaxgen.nn.norm import BatchNorm

DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
          50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3)),
          152: ("bottleneck", (3, 8, 36, 3))}
STEMS = ("cifar", "imagenet")
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

_he = nn.initializers.variance_scaling(2.0, "fan_out", "truncated_normal")


def _bn(train: bool, zero: bool = False, name=None, use_bias=True) -> BatchNorm:
  return BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                   scale_init=nn.initializers.zeros if zero else nn.initializers.ones,
                   use_bias=use_bias, name=name)


def _conv(features: int, k: int, strides: int, name: str, dtype) -> Conv:
  pad = ((k - 1) // 2, k // 2) if strides == 1 else (((k - 1) // 2,) * 2)
  return Conv(features, (k, k), strides, (pad, pad), use_bias=False, kernel_init=_he, dtype=dtype,
              name=name)


class Block(nn.Module):
  features: int
  strides: int
  kind: str
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    expansion = 4 if self.kind == "bottleneck" else 1
    out = self.features * expansion
    shortcut = x
    if self.strides != 1 or x.shape[-1] != out:
      shortcut = _bn(train, name="proj_bn")(_conv(out, 1, self.strides, "proj_conv", self.dtype)(x))
    if self.kind == "basic":
      y = nn.relu(_bn(train, name="bn1")(_conv(self.features, 3, self.strides, "conv1", self.dtype)(x)))
      y = _bn(train, zero=True, name="bn2")(_conv(self.features, 3, 1, "conv2", self.dtype)(y))
    else:
      y = nn.relu(_bn(train, name="bn1")(_conv(self.features, 1, 1, "conv1", self.dtype)(x)))
      y = nn.relu(_bn(train, name="bn2")(_conv(self.features, 3, self.strides, "conv2", self.dtype)(y)))
      y = _bn(train, zero=True, name="bn3")(_conv(out, 1, 1, "conv3", self.dtype)(y))
    return nn.relu(y + shortcut)


class ResNet(nn.Module):
  """[B, H, W, C] float -> h float32 [B, D] (module docstring)."""
  depth: int = 18
  width: int = 64
  stem: str = "cifar"
  dtype: Any = jnp.float32
  stages: Sequence[int] = ()    # blocks per stage overriding the depth's (e.g. (1, 1, 1) for tests)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    kind, blocks = DEPTHS[self.depth]
    blocks = tuple(self.stages) or blocks
    if self.stem == "cifar":
      x = _conv(self.width, 3, 1, "stem_conv", self.dtype)(x)
    else:
      x = _conv(self.width, 7, 2, "stem_conv", self.dtype)(x)
    x = nn.relu(_bn(train, name="stem_bn")(x))
    if self.stem == "imagenet":
      x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    for i, n in enumerate(blocks):
      for j in range(n):
        x = Block(self.width * 2 ** i, 2 if (j == 0 and i > 0) else 1, kind, self.dtype,
                  name=f"stage{i + 1}_block{j + 1}")(x, train)
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


class ProjectionHead(nn.Module):
  """SimCLR's nonlinear projection head: h [B, D] -> z float32 [B, out_dim]."""
  out_dim: int = 128
  num_layers: int = 2

  @nn.compact
  def __call__(self, h: jax.Array, train: bool) -> jax.Array:
    x = h
    for j in range(self.num_layers - 1):
      x = nn.relu(_bn(train, name=f"bn{j}")(Dense(h.shape[-1], use_bias=False, name=f"dense{j}")(x)))
    j = self.num_layers - 1
    return _bn(train, name=f"bn{j}", use_bias=False)(Dense(self.out_dim, use_bias=False,
                                                           name=f"dense{j}")(x))


class SimCLRModel(nn.Module):
  """Encoder + projection head: returns (h [B, D], z [B, out_dim])."""
  depth: int = 18
  width: int = 64
  stem: str = "cifar"
  out_dim: int = 128
  proj_layers: int = 2
  dtype: Any = jnp.float32
  stages: Sequence[int] = ()

  def setup(self):
    self.encoder = ResNet(self.depth, self.width, self.stem, self.dtype, tuple(self.stages))
    self.head = ProjectionHead(self.out_dim, self.proj_layers)

  def __call__(self, x, train: bool):
    h = self.encoder(x, train)
    return h, self.head(h, train)

  def embed(self, x, train: bool = False):
    return self.encoder(x, train)
