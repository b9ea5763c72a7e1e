"""Causal convolutions of autoregressive image models: masked (PixelCNN) and shifted (PixelCNN++).

Pixels are generated in raster order (row by row, left to right) and, inside a pixel, colour
channel by colour channel (R, then G, then B). A layer is causal when its output at pixel (i, j),
colour group g, depends only on earlier pixels and, at pixel (i, j) itself, on earlier colour
groups.

Masked convolutions (van den Oord et al. 2016, "Pixel Recurrent Neural Networks", Sec. 3.4) zero the
kernel taps below the centre row and right of the centre; at the centre tap, output colour group g
sees input groups < g (mask "A", the first layer: nothing of the pixel being predicted) or <= g
(mask "B", later layers: what this group's own features already saw). Channels are split into
`colors` contiguous groups: channel i of C is in group i * colors // C (R, G, B in thirds). The mask
multiplies a plain flax "kernel" param (layout HWIO), so the masked taps are exact zeros and the
gradient of an output with respect to any input it must not see is exactly 0.

Shifted convolutions (Salimans et al. 2017, PixelCNN++; openai/pixel-cnn nn.py) reach the same
causality by padding instead of masking, so no multiply-adds are spent on zero taps: a (2, 3) kernel
with the input padded one row on top sees the current row and the one above ("down-shifted"); a
(2, 2) kernel padded on top and left sees up and to the left ("down-right-shifted"). A `down_shift`
(or `right_shift`) of the result then excludes the current row (column).

All layers are NHWC with float32 params and a configurable compute dtype.
"""
from typing import Any, Callable, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.nn.linear import Conv, bias_add, weight_norm_kernel

_DN = ("NHWC", "HWIO", "NHWC")


def colour_groups(num_channels: int, colors: int) -> np.ndarray:
  """int [num_channels]: the colour group of each channel, i * colors // num_channels."""
  return np.arange(num_channels) * colors // num_channels


def causal_mask(kernel_size: Sequence[int], in_features: int, out_features: int, mask_type: str,
                colors: int, centre: Optional[Sequence[int]] = None,
                out_blocks: int = 1) -> np.ndarray:
  """The 0/1 float32 mask [kh, kw, in, out] (HWIO) of a causal colour-masked convolution.

  Args:
    kernel_size: (kh, kw).
    in_features, out_features: channel counts.
    mask_type: "A" (centre: output group g sees input groups < g) or "B" (<= g).
    colors: number of colour groups (1 for grey / binary images, 3 for RGB).
    centre: the tap (ci, cj) that lands on the output pixel; default (kh // 2, kw // 2). Taps in
      rows below it, and right of it in its row, are zeroed.
    out_blocks: the output channels are this many equal concatenated blocks (e.g. the two halves
      of a gated unit), each split into colour groups on its own, so that the channels that a gate
      multiplies together belong to the same colour.
  """
  if mask_type not in ("A", "B"):
    raise ValueError(f"causal_mask: mask_type must be 'A' or 'B', got {mask_type!r}.")
  kh, kw = kernel_size
  ci, cj = centre if centre is not None else (kh // 2, kw // 2)
  if not (0 <= ci < kh and 0 <= cj < kw):
    raise ValueError(f"causal_mask: centre {(ci, cj)} is outside the kernel {(kh, kw)}.")
  if out_features % out_blocks:
    raise ValueError(f"causal_mask: {out_features} output channels do not split into "
                     f"out_blocks={out_blocks} equal blocks.")
  if min(in_features, out_features // out_blocks) < colors:
    raise ValueError(f"causal_mask: every colour group needs a channel, but in={in_features}, "
                     f"out={out_features} (in {out_blocks} block(s)) < colors={colors}; use more "
                     "features.")
  mask = np.ones((kh, kw, in_features, out_features), np.float32)
  mask[ci + 1:] = 0.0
  mask[ci, cj + 1:] = 0.0
  gi = colour_groups(in_features, colors)
  go = np.tile(colour_groups(out_features // out_blocks, colors), out_blocks)
  centre_ok = go[None, :] > gi[:, None] if mask_type == "A" else go[None, :] >= gi[:, None]
  mask[ci, cj] = centre_ok.astype(np.float32)
  return mask


def down_shift(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, H, W, C]: row i becomes row i - 1 (a zero row on top, the last dropped)."""
  return jnp.pad(x, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :-1]


def right_shift(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, H, W, C]: column j becomes j - 1 (a zero column on the left)."""
  return jnp.pad(x, ((0, 0), (0, 0), (1, 0), (0, 0)))[:, :, :-1]


def _pair(v: Union[int, Sequence[int]]) -> tuple[int, int]:
  return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class MaskedConv(nn.Module):
  """Colour-masked causal convolution, stride 1, output the input's size.

  Params: "kernel" [kh, kw, in, features] (HWIO; the mask is applied in the forward pass and is not
  a param, as the PyTorch peer's buffer) and "bias" [features].

  Attributes:
    features: output channels.
    kernel_size: k (odd: k x k with the centre tap in the middle) or (kh, kw) with `centre`.
    mask_type: "A" or "B" (see the module docstring).
    colors: colour groups of the input and output channels (1 or 3).
    centre: the centre tap (ci, cj); default (kh // 2, kw // 2). The input is zero-padded so that
      the centre lands on the output pixel: e.g. kernel (1, 4) with centre (0, 3) is the horizontal
      stack of the Gated PixelCNN (the pixel and the 3 to its left, nothing wasted on masked taps).
    out_blocks: see `causal_mask` (2 for the [tanh half, sigmoid half] of a gated unit).
    dtype: compute dtype (None: the inputs' and params' result type).
  """
  features: int
  kernel_size: Union[int, Sequence[int]]
  mask_type: str = "B"
  colors: int = 1
  centre: Optional[Sequence[int]] = None
  out_blocks: int = 1
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: Callable[..., Any] = nn.initializers.lecun_normal()
  bias_init: Callable[..., Any] = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x [B, H, W, C_in] -> [B, H, W, features]."""
    if x.ndim != 4:
      raise ValueError(f"MaskedConv expects NHWC [B, H, W, C] inputs, got shape {x.shape}.")
    kh, kw = _pair(self.kernel_size)
    if self.centre is None and (kh % 2 == 0 or kw % 2 == 0):
      raise ValueError(f"MaskedConv: kernel_size {(kh, kw)} has no middle tap; use odd sizes or "
                       "give the centre tap explicitly.")
    ci, cj = self.centre if self.centre is not None else (kh // 2, kw // 2)
    mask = causal_mask((kh, kw), x.shape[-1], self.features, self.mask_type, self.colors, (ci, cj),
                       self.out_blocks)
    kernel = self.param("kernel", self.kernel_init, mask.shape, self.param_dtype)
    dtype = self.dtype or jnp.result_type(x, kernel)
    # kernel * mask on the param (not a masked copy stored elsewhere): the param layout stays plain
    # HWIO and the masked taps get exactly zero gradient.
    kernel = (kernel * jnp.asarray(mask, kernel.dtype)).astype(dtype)
    # The rows below the centre are all zero (and, for a one-row kernel, the taps right of it): the
    # convolution runs on the rest only, e.g. 6 of a 3x3's 9 taps and 28 of a 7x7's 49, with the
    # padding that keeps the centre on the output pixel. Same result, a third fewer multiply-adds.
    kernel = kernel[:ci + 1, :cj + 1] if ci == 0 else kernel[:ci + 1]
    right = kernel.shape[1] - 1 - cj
    y = jax.lax.conv_general_dilated(x.astype(dtype), kernel, (1, 1), ((ci, 0), (cj, right)),
                                     dimension_numbers=_DN)
    if self.use_bias:
      y = bias_add(y, self.param("bias", self.bias_init, (self.features,), self.param_dtype))
    return y


class DownShiftedConv(nn.Module):
  """PixelCNN++ `down_shifted_conv2d`: output row i sees input rows i - kh + 1 .. i, columns
  j - kw // 2 .. j + kw // 2 (zero padding on top and both sides, then a VALID convolution).

  [B, H, W, C] -> [B, ceil(H / s), ceil(W / s), features] for strides s (the reference's stride-2
  downsampling of the "u" stream). Params as `jaxgen.nn.linear.Conv` ("kernel" HWIO, "bias").
  """
  features: int
  kernel_size: Sequence[int] = (2, 3)
  strides: Union[int, Sequence[int]] = 1
  dtype: Any = None
  kernel_init: Callable[..., Any] = nn.initializers.lecun_normal()
  weight_norm: bool = False       # jaxgen.nn.linear.weight_norm_kernel (PixelCNN++'s layers)
  init_scale: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kh, kw = self.kernel_size
    if kw % 2 == 0:
      raise ValueError(f"DownShiftedConv: kernel width must be odd (centred), got {kw}.")
    return Conv(self.features, (kh, kw), strides=self.strides,
                padding=((kh - 1, 0), (kw // 2, kw // 2)), dtype=self.dtype,
                kernel_init=self.kernel_init, weight_norm=self.weight_norm,
                init_scale=self.init_scale, name="conv")(x)


class DownRightShiftedConv(nn.Module):
  """PixelCNN++ `down_right_shifted_conv2d`: output (i, j) sees input rows i - kh + 1 .. i and
  columns j - kw + 1 .. j (zero padding on top and left).
  [B, H, W, C] -> [B, ceil(H / s), ceil(W / s), features]. Params as `jaxgen.nn.linear.Conv`."""
  features: int
  kernel_size: Sequence[int] = (2, 2)
  strides: Union[int, Sequence[int]] = 1
  dtype: Any = None
  kernel_init: Callable[..., Any] = nn.initializers.lecun_normal()
  weight_norm: bool = False       # jaxgen.nn.linear.weight_norm_kernel (PixelCNN++'s layers)
  init_scale: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kh, kw = self.kernel_size
    return Conv(self.features, (kh, kw), strides=self.strides, padding=((kh - 1, 0), (kw - 1, 0)),
                dtype=self.dtype, kernel_init=self.kernel_init, weight_norm=self.weight_norm,
                init_scale=self.init_scale, name="conv")(x)


def _shifted_conv_transpose(module: nn.Module, x: jax.Array, col_offset: int) -> jax.Array:
  """Stride-s transposed convolution [B, H, W, C] -> [B, sH, sW, features] that sends input pixel
  (i, j) to output rows s i .. s i + kh - 1 and columns s j + col_offset .. s j + col_offset + kw
  - 1.

  That is the reference's VALID `deconv2d` followed by its crop, computed as one input-dilated
  convolution whose padding already is the crop (no output is computed to be thrown away): with the
  dilated input padded by (lo, hi), input index i reaches outputs s i + lo - k + 1 .. s i + lo, and
  the output has (n - 1) s + 1 + lo + hi - k + 1 entries, so lo = k - 1 + offset and
  hi = s - 1 - offset give the wanted reach and exactly s n outputs.
  """
  kh, kw = module.kernel_size
  sh, sw = _pair(module.strides)
  shape = (kh, kw, x.shape[-1], module.features)
  padding = ((kh - 1, sh - 1), (kw - 1 + col_offset, sw - 1 - col_offset))

  def op(x, k):
    return jax.lax.conv_general_dilated(x, k, (1, 1), padding, lhs_dilation=(sh, sw),
                                        dimension_numbers=_DN)

  if module.weight_norm:
    kernel, bias = weight_norm_kernel(module, x, shape, op, module.init_scale)
  else:
    kernel = module.param("kernel", module.kernel_init, shape, jnp.float32)
    bias = module.param("bias", nn.initializers.zeros, (module.features,), jnp.float32)
  dtype = module.dtype or jnp.result_type(x, kernel)
  return bias_add(op(x.astype(dtype), kernel.astype(dtype)), bias)


class DownShiftedConvTranspose(nn.Module):
  """PixelCNN++ `down_shifted_deconv2d` (upsampling of the "u" stream): [B, H, W, C] ->
  [B, sH, sW, features]; input pixel (i, j) reaches output rows s i .. s i + kh - 1 and columns
  s j - kw // 2 .. s j + kw // 2, so nothing moves up.

  Params "kernel" [kh, kw, C, features] (flax `ConvTranspose` layout with transpose_kernel=False:
  the kernel is applied unflipped to the stride-dilated input) and "bias" [features].
  """
  features: int
  kernel_size: Sequence[int] = (2, 3)
  strides: Union[int, Sequence[int]] = 2
  dtype: Any = None
  kernel_init: Callable[..., Any] = nn.initializers.lecun_normal()
  weight_norm: bool = False       # params "direction", "scale", "bias" (nn.linear.weight_norm_kernel)
  init_scale: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.kernel_size[1] % 2 == 0:
      raise ValueError(f"DownShiftedConvTranspose: kernel width must be odd, got "
                       f"{self.kernel_size}.")
    return _shifted_conv_transpose(self, x, col_offset=-(self.kernel_size[1] // 2))


class DownRightShiftedConvTranspose(nn.Module):
  """PixelCNN++ `down_right_shifted_deconv2d` (upsampling of the "ul" stream): [B, H, W, C] ->
  [B, sH, sW, features]; input pixel (i, j) reaches output rows s i .. s i + kh - 1 and columns
  s j .. s j + kw - 1, so nothing moves up or left. Params as `DownShiftedConvTranspose`."""
  features: int
  kernel_size: Sequence[int] = (2, 2)
  strides: Union[int, Sequence[int]] = 2
  dtype: Any = None
  kernel_init: Callable[..., Any] = nn.initializers.lecun_normal()
  weight_norm: bool = False       # params "direction", "scale", "bias" (nn.linear.weight_norm_kernel)
  init_scale: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return _shifted_conv_transpose(self, x, col_offset=0)
