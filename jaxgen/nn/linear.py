"""Dense and convolution layers whose bias gradient is fast on every backend, and the row-sum helper.

XLA:CPU emits a reduction that keeps the minor dimension (sum over batch and pixels of a [B, H, W, C]
array, i.e. a bias gradient or a GroupNorm statistic) as a scalar loop that also recomputes every
fused producer: in the DDPM CIFAR-10 training step such reductions took ~40 % of the step on a 2-core
CPU. As a matrix-vector product with a ones vector the same sum runs ~10x faster. `Dense` and `Conv`
are drop-ins for flax's (same parameter names, shapes, initialisation order and outputs) whose bias
gradient goes through `sum_rows`.
"""
from typing import Any, Callable, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp


def sum_rows(x: jax.Array, batch_dims: int = 0) -> jax.Array:
  """Sum over all axes but the last (and the first, with batch_dims=1), in float32.

  [..., C] -> [C], or [B, ..., C] -> [B, C] with batch_dims=1. On CPU a (batched) matrix-vector
  product with a ones vector (see the module docstring); elsewhere a plain reduction, which XLA's
  GPU/TPU emitters fuse with its producer.
  """
  if batch_dims not in (0, 1):
    raise ValueError(f"sum_rows: batch_dims must be 0 or 1, got {batch_dims}.")
  if jax.default_backend() != "cpu":
    return jnp.sum(x, axis=tuple(range(batch_dims, x.ndim - 1)), dtype=jnp.float32)
  x = x.reshape(*x.shape[:batch_dims], -1, x.shape[-1])
  spec = "bmc,bm->bc" if batch_dims else "mc,m->c"
  return jnp.einsum(spec, x, jnp.ones(x.shape[:-1], x.dtype), preferred_element_type=jnp.float32)


@jax.custom_vjp
def bias_add(y: jax.Array, bias: jax.Array) -> jax.Array:
  """y [..., C] + bias [C] (in y's dtype), with the bias gradient computed by `sum_rows`."""
  return y + bias.astype(y.dtype)


def _bias_add_fwd(y, bias):
  return bias_add(y, bias), bias


def _bias_add_bwd(bias, g):
  return g, sum_rows(g).astype(bias.dtype)


bias_add.defvjp(_bias_add_fwd, _bias_add_bwd)


def weight_norm_kernel(module: nn.Module, x: jax.Array, kernel_shape: tuple[int, ...],
                       op: Callable[[jax.Array, jax.Array], jax.Array], init_scale: float = 1.0,
                       ) -> tuple[jax.Array, jax.Array]:
  """(kernel, bias) of a weight-normalised layer (Salimans & Kingma 2016): kernel = scale * v / |v|,
  the norm over every axis but the last (the output channels), with data-dependent initialisation.

  Params "direction" (v, kernel_shape, init N(0, 0.05^2)), "scale" (g, [out]) and "bias" (b, [out]),
  as openai/pixel-cnn's `conv2d` / `deconv2d` / `nin` (V, g, b). At `init`, g and b are set from the
  init batch x so that op(x, kernel) + b has zero mean and standard deviation `init_scale` per output
  channel over every other axis: g = init_scale / sqrt(var + 1e-10), b = -mean g, with mean and var
  those of op(x, v / |v|); g = init_scale where var <= 1e-8 (a channel constant over the batch, e.g.
  one that sees only padding, keeps a unit scale rather than ~1e5, which would amplify rounding
  noise). So `init` must see real data (a method with weight-normalised layers sets
  `Method.init_from_data`). `op` takes (x, kernel) in the compute dtype; the statistics are float32.
  """
  v = module.param("direction", nn.initializers.normal(0.05), kernel_shape, jnp.float32)
  unit = v * jax.lax.rsqrt(jnp.sum(jnp.square(v), axis=tuple(range(len(kernel_shape) - 1))))

  stats = []    # (mean, var) of op(x, unit) per channel: computed once, at init only

  def unit_stats():
    if not stats:
      y = op(x.astype(jnp.float32), unit).astype(jnp.float32)
      rows = tuple(range(y.ndim - 1))
      stats.append((jnp.mean(y, axis=rows), jnp.var(y, axis=rows)))
    return stats[0]

  def init_scale_fn(_):
    var = unit_stats()[1]
    return jnp.where(var > 1e-8, init_scale * jax.lax.rsqrt(var + 1e-10), init_scale)

  g = module.param("scale", init_scale_fn)
  b = module.param("bias", lambda _: -unit_stats()[0] * g)   # at init, g is the value just set
  return unit * g, b


def weight_norm_to_plain(tree: Any) -> Any:
  """A params tree with weight-normalised layers ("direction", "scale", "bias") -> the same tree with
  plain layers ("kernel", "bias"), kernel = scale * v / |v| computed exactly as `weight_norm_kernel`
  does at every call: a module built with weight_norm=False on this tree computes the same outputs,
  without renormalising v on each call (used by samplers that apply layers many times)."""
  if not isinstance(tree, dict):
    return tree
  if "direction" in tree:
    v = tree["direction"]
    unit = v * jax.lax.rsqrt(jnp.sum(jnp.square(v), axis=tuple(range(v.ndim - 1))))
    return {"kernel": unit * tree["scale"], "bias": tree["bias"]}
  return {k: weight_norm_to_plain(v) for k, v in tree.items()}


def _project(module: nn.Module, x: jax.Array, kernel_shape: tuple[int, ...],
             op: Callable[[jax.Array, jax.Array], jax.Array]) -> jax.Array:
  """Dense / Conv body: the "kernel" param, op(x, kernel) in the compute dtype, then the "bias"; with
  module.weight_norm, the kernel and bias of `weight_norm_kernel` instead."""
  if getattr(module, "weight_norm", False):
    kernel, bias = weight_norm_kernel(module, x, kernel_shape, op, module.init_scale)
    dtype = module.dtype or x.dtype
    return bias_add(op(x.astype(dtype), kernel.astype(dtype)), bias)
  kernel = module.param("kernel", module.kernel_init, kernel_shape, module.param_dtype)
  dtype = module.dtype or jnp.result_type(x, kernel)
  y = op(x.astype(dtype), kernel.astype(dtype))
  if module.use_bias:
    y = bias_add(y, module.param("bias", module.bias_init, (module.features,), module.param_dtype))
  return y


class Dense(nn.Module):
  """`flax.linen.Dense` on the last axis with the same params (kernel [in, out], bias [out])."""
  features: int
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: Callable[..., Any] = nn.initializers.lecun_normal()
  bias_init: Callable[..., Any] = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return _project(self, x, (x.shape[-1], self.features),
                    lambda x, k: jax.lax.dot_general(x, k, (((x.ndim - 1,), (0,)), ((), ()))))


def _explicit_padding(padding: Any, kernel_size: Sequence[int]) -> tuple:
  """A stride-1 convolution's padding as ((top, bottom), (left, right)); "SAME" as XLA pads it."""
  if padding == "VALID":
    return ((0, 0), (0, 0))
  if padding == "SAME":
    return tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel_size)
  return padding


class Conv(nn.Module):
  """`flax.linen.Conv` for NHWC images with explicit padding and the same params (kernel
  [kh, kw, in, out], bias [out]).

  Attributes:
    features: output channels.
    kernel_size: (kh, kw).
    strides: int or (sh, sw).
    padding: ((top, bottom), (left, right)) zeros, or "SAME" / "VALID".
    weight_norm: weight-normalised kernel with data-dependent init (`weight_norm_kernel`; params
      "direction", "scale", "bias" instead of "kernel", "bias"; kernel_init / use_bias unused).
    init_scale: with weight_norm, the initial per-channel output standard deviation.
  """
  features: int
  kernel_size: Sequence[int]
  strides: Union[int, Sequence[int]] = 1
  padding: Any = "SAME"
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: Callable[..., Any] = nn.initializers.lecun_normal()
  bias_init: Callable[..., Any] = nn.initializers.zeros
  weight_norm: bool = False
  init_scale: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim != 4:
      raise ValueError(f"Conv expects NHWC [B, H, W, C] inputs, got shape {x.shape}.")
    strides = (self.strides,) * 2 if isinstance(self.strides, int) else tuple(self.strides)
    padding = self.padding if isinstance(self.padding, str) else tuple(map(tuple, self.padding))
    op = lambda x, k: jax.lax.conv_general_dilated(  # noqa: E731
        x, k, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    even = x.shape[1] % 2 == 0 and x.shape[2] % 2 == 0
    if (tuple(self.kernel_size) == (4, 4) and strides == (2, 2) and padding in ("SAME", ((1, 1), (1, 1)))
        and even):
      # The down-sampling layer of DCGAN, PatchGAN and the VAE (padding 1 = "SAME" on even sides):
      # the same convolution with a sub-pixel input gradient. Imported here: conv imports bias_add.
      from jaxgen.nn.conv import conv_4x4_s2
      op = conv_4x4_s2
    elif tuple(self.kernel_size) == (3, 3) and strides == (2, 2) and padding == ((1, 1), (1, 1)) and even:
      # SRGAN's discriminator and the CycleGAN generators' down-sampling: the same, for 3x3.
      from jaxgen.nn.conv import conv_3x3_s2
      op = conv_3x3_s2
    elif strides == (1, 1):
      # Image and logit layers (few output channels) and their input gradients when the input has
      # few channels: XLA:CPU runs those as slow loops (see jaxgen.nn.conv.conv_few_outputs).
      from jaxgen.nn.conv import few_channel_conv
      few = few_channel_conv(x.shape[-1], self.features, tuple(self.kernel_size))
      if few is not None and (not isinstance(padding, str) or padding in ("SAME", "VALID")):
        pads = _explicit_padding(padding, self.kernel_size)
        op = lambda x, k: few(jnp.pad(x, ((0, 0), *pads, (0, 0))), k)  # noqa: E731
    return _project(self, x, (*self.kernel_size, x.shape[-1], self.features), op)

