"""Convolutions shared by several families."""
from typing import Any, Callable, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.nn.linear import bias_add

_DN = ("NHWC", "HWIO", "NHWC")


def _flip_io(kernel: jax.Array) -> jax.Array:
  """[kh, kw, a, b] -> [kh, kw, b, a], spatially flipped: the kernel that makes a convolution's input
  gradient a transposed convolution and back (an involution)."""
  return jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)


def _conv_s2(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """XLA's 4x4, stride-2 convolution with one pixel of padding per side: [B, 2H, 2W, C_in] ->
  [B, H, W, C_out]."""
  return jax.lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)), dimension_numbers=_DN)


def _cpu() -> bool:
  return jax.default_backend() == "cpu"


def _batch_minor(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [C, H, W, B], the operand layout of a weight-gradient convolution, as two
  transposes XLA:CPU runs as cache-friendly 2-D tiles: per image [H W, C] -> [C, H W], then
  [B, C H W] -> [C H W, B]. XLA would merge them into one transpose that swaps the outermost and
  innermost dimensions, 2x slower for 128x16x16x128 (the barrier keeps them apart)."""
  b, h, w, c = x.shape
  per_image = jax.lax.optimization_barrier(x.reshape(b, h * w, c).transpose(0, 2, 1))
  return per_image.reshape(b, c * h * w).T.reshape(c, h, w, b)


def _kernel_grad(xt: jax.Array, g: jax.Array, size: tuple[int, int], stride: int,
                 pad_lo: tuple[int, int]) -> jax.Array:
  """The kernel gradient [kh, kw, C_in, C_out] of a convolution with that kernel size, stride and
  leading padding (the trailing padding is implied by the sizes), at input x (given as
  xt = `_batch_minor(x)`, [C_in, H, W, B]) and output cotangent g [B, H_out, W_out, C_out]:
  dk[p, q] = sum_{b, i, j} x_padded[b, stride i + p, stride j + q] g[b, i, j]. It runs as a
  forward convolution of xt with the cotangent as a stride-dilated kernel, the layout XLA:CPU would
  otherwise reach with one slow transpose per operand."""
  _, h, w, _ = xt.shape
  h_out, w_out = g.shape[1:3]
  pad = [(lo, k - n - lo + stride * (n_out - 1))
         for k, n, n_out, lo in zip(size, (h, w), (h_out, w_out), pad_lo)]
  dk = jax.lax.conv_general_dilated(xt, g.transpose(1, 2, 0, 3), (1, 1), pad,
                                    rhs_dilation=(stride, stride), dimension_numbers=_DN)
  return dk.transpose(1, 2, 0, 3)


def _conv_s2_kernel_grad(x: jax.Array, g: jax.Array, kernel: jax.Array) -> jax.Array:
  """The kernel gradient of `_conv_s2` at input x and output cotangent g (`kernel` gives its
  shape and dtype: the op is linear in it). `_kernel_grad` on CPU, XLA's own elsewhere (GPU and TPU
  compilers pick weight-gradient layouts well)."""
  if not _cpu():
    return jax.vjp(lambda k: _conv_s2(x, k), kernel)[1](g)[0]
  return _kernel_grad(_batch_minor(x), g, kernel.shape[:2], 2, (1, 1)).astype(kernel.dtype)


def _with_input_grad(primal: Callable, input_grad: Callable[[jax.Array, jax.Array], jax.Array]):
  """`primal` (a `_conv_s2` of some kernel size) with a custom VJP: the input gradient is
  input_grad(g, kernel), the kernel gradient `_conv_s2_kernel_grad`. Twice differentiable
  (gradient penalties, R1) as long as input_grad is (it is a linear op in g with its own VJP or
  autodiff)."""
  op = jax.custom_vjp(primal)
  op.defvjp(lambda x, kernel: (_conv_s2(x, kernel), (x, kernel)),
            lambda res, g: (input_grad(g, res[1]), _conv_s2_kernel_grad(res[0], g, res[1])))
  return op


def _conv_4x4_s2(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Stride-2, 4x4 convolution with one pixel of zero padding per side (PyTorch's
  `Conv2d(C_in, C_out, 4, 2, 1)`, flax's `nn.Conv(C_out, (4, 4), strides=2, padding=1)` or "SAME"
  on even sides), the DCGAN / PatchGAN / VAE down-sampling layer: [B, 2H, 2W, C_in] -> [B, H, W,
  C_out], kernel [4, 4, C_in, C_out] (HWIO).

  The forward pass is XLA's, the kernel gradient `_conv_s2_kernel_grad`. The input gradient, which
  is the transposed convolution of the output gradient with the flipped kernel, runs as
  `conv_transpose_4x4_s2` (sub-pixel): XLA's own input gradient dilates the cotangent and multiplies
  mostly inserted zeros, 1.5x (16x16x128 -> 8x8x256) and 1.3x (8x8x256 -> 4x4x512) slower at batch
  128 on a 2-core CPU.
  Twice differentiable (gradient penalties, R1): both directions are linear ops with custom VJPs.
  """
  return _conv_s2(x, kernel)


conv_4x4_s2 = _with_input_grad(_conv_4x4_s2, lambda g, kernel: conv_transpose_4x4_s2(g, _flip_io(kernel)))


def _conv_3x3_s2(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Stride-2, 3x3 convolution with one pixel of zero padding per side on even sides (PyTorch's
  `Conv2d(C_in, C_out, 3, 2, 1)`), the down-sampling layer of the SRGAN discriminator and of the
  CycleGAN / style-transfer ResNet generators: [B, 2H, 2W, C_in] -> [B, H, W, C_out], kernel
  [3, 3, C_in, C_out] (HWIO).

  The forward pass is XLA's, the kernel gradient `_conv_s2_kernel_grad`. The input gradient
  dx[2i - 1 + k] += g[i] kernel[k] is PyTorch's `ConvTranspose2d(3, 2, padding=1,
  output_padding=1)` of the output gradient, computed sub-pixel by `conv_transpose_3x3_s2` (9
  multiply-adds per output-gradient pixel and channel, where XLA's input-dilated convolution does
  36 and runs as a loop on XLA:CPU): 2.4x faster for SRGAN's 48x48x64 -> 96x96x64 layer at batch
  16 on a 2-core CPU, 2.5x for 24x24x128 -> 48x48x128, 1.2x for the smaller ones. Twice
  differentiable.
  """
  return _conv_s2(x, kernel)


conv_3x3_s2 = _with_input_grad(_conv_3x3_s2,
                               lambda g, kernel: conv_transpose_3x3_s2(g, kernel.transpose(0, 1, 3, 2)))


@jax.custom_vjp
def conv_transpose_4x4_s2(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Stride-2, 4x4 transposed convolution with 2 pixels of padding per side on the dilated input,
  the DCGAN/VAE up-sampling layer: equal to flax's `nn.ConvTranspose(features, (4, 4), strides=2,
  padding=((2, 2), (2, 2)))` (= padding "SAME" for this kernel and stride, PyTorch's padding=1).
  It is the input gradient of `conv_4x4_s2` with kernel `_flip_io(kernel)`, so its input gradient
  is `conv_4x4_s2` of the cotangent (XLA's strided convolution: 1.5x faster than autodiff through
  the phases below on XLA:CPU). The kernel gradient is taken per output phase, four 2x2 stride-1
  kernel gradients by `_kernel_grad` on one batch-minor copy of x (1.2-1.3x faster than the strided
  convolution's kernel gradient with input and cotangent swapped, at batch 128 for 4x4x512 ->
  8x8x256 and 8x8x256 -> 16x16x128), or for the GEMM form by
  `_conv_transpose_4x4_s2_gemm_kernel_grad`.

  The forward pass is computed sub-pixel style: output phase (a, b) (pixels [2i + a, 2j + b]) is a
  VALID 2x2 convolution of the 1-padded input window starting at (a, b) with the taps
  kernel[a::2, b::2], the padding given to the convolution rather than copied (1.4x faster for
  8x8x256 -> 16x16x128 at batch 128 than convolving padded slices). That does the 16 multiply-adds
  per input pixel the layer needs, where the input-dilated convolution XLA otherwise runs does 64
  (mostly on inserted zeros), and XLA:CPU runs it 50x faster for a 128x8x8x512 -> 16x16x256 layer
  (forward + backward).

  With few output channels (an image layer: C_out <= _GEMM_MAX_FEATURES) it runs as one matrix
  product instead, see `_conv_transpose_4x4_s2_gemm`.

  Args:
    x: [B, H, W, C_in].
    kernel: [4, 4, C_in, C_out] (flax ConvTranspose layout, not flipped).

  Returns:
    [B, 2H, 2W, C_out].
  """
  return _conv_transpose_4x4_s2_fwd(x, kernel)[0]


def _conv_transpose_4x4_s2_fwd(x, kernel):
  if kernel.shape[-1] <= _GEMM_MAX_FEATURES:
    return _conv_transpose_4x4_s2_gemm(x, kernel), (x, kernel)
  return _conv_transpose_4x4_s2_phases(x, kernel), (x, kernel)


def _conv_transpose_4x4_s2_phases(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`conv_transpose_4x4_s2`'s sub-pixel forward pass (see there). Same args and result."""
  b, h, w, _ = x.shape
  rows = []
  for a in (0, 1):
    # The 1-padded window starting at (a, c) is the input padded by (1 - a, a) rows and (1 - c, c)
    # columns; passed to the convolution, that padding costs no padded copy of the input.
    cols = [jax.lax.conv_general_dilated(x, kernel[a::2, c::2], (1, 1), ((1 - a, a), (1 - c, c)),
                                         dimension_numbers=_DN) for c in (0, 1)]
    rows.append(jnp.stack(cols, axis=3))                 # [B, H, W, 2 (b), C_out]
  return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * w, kernel.shape[-1])   # [B, H, 2 (a), W, 2, C]


def _conv_transpose_4x4_s2_bwd(res, g):
  x, kernel = res
  flipped = _flip_io(kernel)
  if kernel.shape[-1] <= _GEMM_MAX_FEATURES:
    dk = _conv_transpose_4x4_s2_gemm_kernel_grad(x, g)
  elif not _cpu():
    # The strided convolution's kernel gradient with the roles of input and cotangent swapped.
    dk = _flip_io(_conv_s2_kernel_grad(g, x, flipped))
  else:
    # Phase (a, c)'s taps kernel[a::2, c::2] see x through a 2x2 stride-1 window padded (1 - a, a)
    # x (1 - c, c) and get the cotangent's pixels [2i + a, 2j + c].
    xt = _batch_minor(x)
    phase = lambda a, c: _kernel_grad(xt, g[:, a::2, c::2], (2, 2), 1, (1 - a, 1 - c))  # noqa: E731
    # kernel[2u + a, 2v + c] = phase(a, c)[u, v]
    dk = jnp.stack([jnp.stack([phase(a, c) for c in (0, 1)], axis=2) for a in (0, 1)], axis=1)
    dk = dk.reshape(kernel.shape)
  return conv_4x4_s2(g, flipped), dk.astype(kernel.dtype)


conv_transpose_4x4_s2.defvjp(_conv_transpose_4x4_s2_fwd, _conv_transpose_4x4_s2_bwd)


# Up to this many output channels conv_transpose_4x4_s2 is one GEMM plus an overlap-add. XLA:CPU runs
# the sub-pixel 2x2 convolutions at ~3 GFLOP/s when they produce 3 channels (DCGAN's 128 -> 3
# output layer, 16x16 -> 32x32 at batch 128: 69 ms forward, 268 ms forward + backward on one core;
# as a GEMM 6.5 ms and 24 ms). At 16 channels the GEMM is still 2.4x faster forward + backward, at
# 32 it is slower forward.
_GEMM_MAX_FEATURES = 16
# Row (column) offset of tap ky (kx) into the 1-padded per-tap products: output row 2i + ky % 2
# takes tap ky from input row i + ky // 2 + ky % 2 - 1.
_TAP_OFFSET_4X4 = (0, 1, 1, 2)


def _conv_transpose_4x4_s2_gemm(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`conv_transpose_4x4_s2` as the transposed convolution's own definition: each input pixel times
  all 16 taps in one [B*H*W, C_in] x [C_in, 16*C_out] matrix product, then each output pixel sums
  the 4 products that reach it (overlap-add). Autodiff gives plain 2-D matrix products for the
  backward pass too (no transposed copies of the activations). Same args and result."""
  b, h, w, c_in = x.shape
  c_out = kernel.shape[-1]
  taps = x.reshape(b * h * w, c_in) @ kernel.transpose(2, 0, 1, 3).reshape(c_in, 16 * c_out)
  taps = jnp.pad(taps.reshape(b, h, w, 4, 4, c_out), ((0, 0), (1, 1), (1, 1), (0, 0), (0, 0), (0, 0)))
  at = lambda ky, kx: taps[:, _TAP_OFFSET_4X4[ky]:_TAP_OFFSET_4X4[ky] + h,  # noqa: E731
                           _TAP_OFFSET_4X4[kx]:_TAP_OFFSET_4X4[kx] + w, ky, kx]
  rows = [jnp.stack([at(a, c) + at(a, c + 2) + at(a + 2, c) + at(a + 2, c + 2) for c in (0, 1)], axis=3)
          for a in (0, 1)]                               # [B, H, W, 2 (b), C_out] per row phase a
  return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * w, c_out)


def _conv_transpose_4x4_s2_gemm_kernel_grad(x: jax.Array, g: jax.Array) -> jax.Array:
  """The kernel gradient of `_conv_transpose_4x4_s2_gemm` at input x [B, H, W, C_in] and output
  cotangent g [B, 2H, 2W, C_out]: x^T times the per-tap cotangents dtaps[b, m, n, ky, kx] =
  g[b, 2m + 2 - ky, 2n + 2 - kx] (zero outside g), which are read straight out of the 1-padded g
  as two 2-row (2-column) windows of its row (column) pairs. Autodiff of the overlap-add builds
  them as a sum of 16 padded slices instead (~5x slower on XLA:CPU)."""
  b, h, w, c_in = x.shape
  c_out = g.shape[-1]
  # pairs[b, r, p, s, q] = g_padded[b, 2r + p, 2s + q]; dtaps at ky = 3 - (2 dr + p) is row r = m + dr.
  pairs = jnp.pad(g, ((0, 0), (1, 1), (1, 1), (0, 0))).reshape(b, h + 1, 2, w + 1, 2, c_out)
  taps = jnp.stack([jnp.stack([pairs[:, dr:dr + h, :, dc:dc + w] for dc in (0, 1)], axis=3)
                    for dr in (0, 1)], axis=3)          # [B, H, 2 (p), 2 (dr), 2 (dc), W, 2 (q), C]
  taps = taps.transpose(0, 1, 5, 3, 2, 4, 6, 7)        # [B, H, W, dr, p, dc, q, C]
  dk = x.reshape(b * h * w, c_in).T @ taps.reshape(b * h * w, 16 * c_out)
  return jnp.flip(dk.reshape(c_in, 4, 4, c_out).transpose(1, 2, 0, 3), (0, 1))


@jax.custom_vjp
def conv_few_outputs(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """VALID, stride-1 convolution (cross-correlation, as `lax.conv_general_dilated`) for layers with
  few output channels (an image or logit layer: CycleGAN's 7x7 64 -> 3, PatchGAN's 4x4 512 -> 1).

  XLA:CPU hands such convolutions, and their kernel gradients, to a generic loop emitter instead of
  Eigen: ~20 GFLOP/s (CycleGAN's c7s1-3 at 128x128, batch 2: 28 ms forward, 26 ms kernel
  gradient). Here every input pixel meets all kh * kw taps in one [B*H*W, C_in] x
  [C_in, kh*kw*C_out] matrix product, and each output pixel sums its kh * kw shifted tap planes.
  The backward pass is matrix products too: the output gradient placed at each tap's offset
  ([B*H*W, kh*kw*C_out], one copy) times the kernel for the input gradient, and the input's
  transpose times it for the kernel gradient. Twice differentiable (its backward is plain ops).

  Args:
    x: [B, H, W, C_in] (already padded).
    kernel: [kh, kw, C_in, C_out] (HWIO).

  Returns:
    [B, H - kh + 1, W - kw + 1, C_out].
  """
  return _conv_few_outputs_fwd(x, kernel)[0]


def _taps_matrix(kernel: jax.Array) -> jax.Array:
  """[kh, kw, C_in, C_out] -> [C_in, kh*kw*C_out] (tap-major columns)."""
  kh, kw, c_in, c_out = kernel.shape
  return kernel.transpose(2, 0, 1, 3).reshape(c_in, kh * kw * c_out)


def _conv_few_outputs_fwd(x, kernel):
  b, h, w, c_in = x.shape
  kh, kw, _, c_out = kernel.shape
  if h < kh or w < kw:
    raise ValueError(f"conv_few_outputs: a {kh}x{kw} kernel needs an input of at least that size, "
                     f"got {h}x{w}.")
  ho, wo = h - kh + 1, w - kw + 1
  taps = (x.reshape(b * h * w, c_in) @ _taps_matrix(kernel)).reshape(b, h, w, kh, kw, c_out)
  y = sum(taps[:, u:u + ho, v:v + wo, u, v] for u in range(kh) for v in range(kw))
  return y, (x, kernel)


def _conv_few_outputs_bwd(res, g):
  x, kernel = res
  b, h, w, c_in = x.shape
  kh, kw, _, c_out = kernel.shape
  # The cotangent of tap plane (u, v) is g shifted down u rows and right v columns, zero elsewhere.
  dtaps = jnp.stack([jnp.pad(g, ((0, 0), (u, kh - 1 - u), (v, kw - 1 - v), (0, 0)))
                     for u in range(kh) for v in range(kw)], axis=3).reshape(b * h * w, kh * kw * c_out)
  dk = (x.reshape(b * h * w, c_in).T @ dtaps).reshape(c_in, kh, kw, c_out).transpose(1, 2, 0, 3)
  if c_in <= FEW_CHANNELS:
    dx = (dtaps @ _taps_matrix(kernel).T).reshape(x.shape)
  else:   # a convolution with C_in outputs, which XLA runs well (2x faster than the product here)
    dx = conv_few_inputs(_pad_full(g, kh, kw), _flip_io(kernel))
  return dx, dk


conv_few_outputs.defvjp(_conv_few_outputs_fwd, _conv_few_outputs_bwd)


def _pad_full(g: jax.Array, kh: int, kw: int) -> jax.Array:
  """g padded by kh - 1 rows and kw - 1 columns per side: a VALID convolution of it with the
  flipped kernel is the input gradient of a VALID kh x kw convolution."""
  return jnp.pad(g, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)))


def _conv_valid(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=_DN)


@jax.custom_vjp
def conv_few_inputs(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """VALID, stride-1 convolution whose input gradient has few channels (CycleGAN's 7x7 3 -> 64 on
  images that need a gradient, the generated ones): XLA's forward pass and kernel gradient, and the
  input gradient, a transposed convolution to C_in channels, as `conv_few_outputs` of the padded
  cotangent with the flipped kernel (XLA:CPU emits it as a loop: 15 ms vs ~5 ms for 128x128,
  batch 2). Same args and result as `conv_few_outputs`; twice differentiable."""
  return _conv_valid(x, kernel)


def _conv_few_inputs_fwd(x, kernel):
  return _conv_valid(x, kernel), (x, kernel)


def _conv_few_inputs_bwd(res, g):
  x, kernel = res
  kh, kw = kernel.shape[:2]
  if kernel.shape[2] <= FEW_CHANNELS:
    dx = conv_few_outputs(_pad_full(g, kh, kw), _flip_io(kernel))
  else:
    dx = jax.vjp(lambda x: _conv_valid(x, kernel), x)[1](g)[0]
  return dx, jax.vjp(lambda k: _conv_valid(x, k), kernel)[1](g)[0]


conv_few_inputs.defvjp(_conv_few_inputs_fwd, _conv_few_inputs_bwd)


def conv_few_outputs_by_rows(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`conv_few_outputs` for large kernels (SRResNet's 9x9 64 -> 3 image layer): one 1 x kw
  convolution to kh * C_out channels (kernel row u's outputs in channels [u*C_out, (u+1)*C_out)),
  then the sum of its kh row-shifted planes. XLA:CPU runs the wide 1 x kw convolution and its
  gradients well, and kh planes compile quickly where conv_few_outputs' kh * kw do not (81 for 9x9:
  a short SRResNet run took ~6x longer). For the 9x9 layer at 96x96, batch 16 on a 2-core CPU:
  forward 37 ms vs XLA's 226 ms (and conv_few_outputs' 83 ms), input + kernel gradient 96 ms vs
  282 ms. Plain ops, differentiated by autodiff. Same args and result as `conv_few_outputs`."""
  kh, kw, c_in, c_out = kernel.shape
  rows = kernel.transpose(1, 2, 0, 3).reshape(1, kw, c_in, kh * c_out)
  y = _conv_valid(x, rows)                                   # [B, H, W - kw + 1, kh * C_out]
  ho = x.shape[1] - kh + 1
  return sum(y[:, u:u + ho, :, u * c_out:(u + 1) * c_out] for u in range(kh))


# Channel counts up to which a stride-1 convolution's narrow side goes through conv_few_outputs:
# at 3 outputs its forward pass is 3.6x faster than XLA:CPU's (7x7, 64 -> 3, 134x134, batch 2); at
# 16 it is 1.8x slower for that layer. Larger kernels than 7x7 (SRGAN's 9x9 image layers) take
# conv_few_outputs_by_rows for few outputs, XLA for few inputs.
FEW_CHANNELS = 4
_FEW_MAX_TAPS = 49


def few_channel_conv(c_in: int, c_out: int, kernel_size: tuple[int, int]):
  """The conv_few_* op (VALID, stride 1) for a layer it speeds up, else None."""
  small = kernel_size[0] * kernel_size[1] <= _FEW_MAX_TAPS
  if c_out <= FEW_CHANNELS:
    return conv_few_outputs if small else conv_few_outputs_by_rows
  return conv_few_inputs if c_in <= FEW_CHANNELS and small else None


class _SubPixelTranspose(nn.Module):
  """A stride-2 transposed convolution with a `size` x `size` kernel (params "kernel" [size, size,
  C_in, features], "bias" [features]) computed by the subclass's `transpose` function; the bias
  gradient goes through `jaxgen.nn.linear.bias_add`. [B, H, W, C_in] -> [B, 2H, 2W, features]."""
  features: int
  use_bias: bool = True
  kernel_init: Callable[..., Any] = nn.initializers.lecun_normal()
  bias_init: Callable[..., Any] = nn.initializers.zeros
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  size: ClassVar[int]
  transpose: ClassVar[Callable[[jax.Array, jax.Array], jax.Array]]

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", self.kernel_init, (self.size, self.size, x.shape[-1], self.features),
                        self.param_dtype)
    y = type(self).transpose(x.astype(self.dtype), kernel.astype(self.dtype))
    if self.use_bias:
      y = bias_add(y, self.param("bias", self.bias_init, (self.features,), self.param_dtype))
    return y


class ConvTranspose2x(_SubPixelTranspose):
  """Drop-in for `nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding="SAME")` (or
  ((2, 2), (2, 2))): same parameter names, shapes and initialisation order, computed with
  `conv_transpose_4x4_s2`. [B, H, W, C_in] -> [B, 2H, 2W, features]."""
  size = 4
  transpose = staticmethod(conv_transpose_4x4_s2)


# Kernel rows (columns) feeding the even and odd output rows (columns) of a 3x3, stride-2 transposed
# convolution with padding 1 and output_padding 1: out[2m] = x[m] k[1], out[2m+1] = x[m] k[2] +
# x[m+1] k[0] (x[H] = 0).
_TAPS_3X3 = ((1,), (2, 0))


def conv_transpose_3x3_s2(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """PyTorch's `ConvTranspose2d(kernel_size=3, stride=2, padding=1, output_padding=1)` (the
  up-sampling layer of the CycleGAN / fast-style-transfer ResNet generators): exactly doubles H, W.

  Torch's definition is out[2i - 1 + k] += x[i] * w[k] per axis. Computed sub-pixel style: each of
  the 4 output phases is a convolution of the input with the 1 or 2 taps that reach it (the zero
  row / column the odd phases read past the end given as the convolution's padding, not copied):
  9 multiply-adds per input pixel and output channel where the input-dilated convolution XLA
  otherwise runs does 36, mostly on inserted zeros. It is also `conv_3x3_s2`'s input gradient.

  Args:
    x: [B, H, W, C_in].
    kernel: [3, 3, C_in, C_out], kernel[ky, kx] = torch_weight[:, :, ky, kx] (torch's weight is
      [C_in, C_out, 3, 3]; no flip).

  Returns:
    [B, 2H, 2W, C_out].
  """
  b, h, w, _ = x.shape
  rows = []
  for a in (0, 1):
    cols = []
    for c in (0, 1):
      taps = jnp.stack([jnp.stack([kernel[i, j] for j in _TAPS_3X3[c]]) for i in _TAPS_3X3[a]])
      # The zero row (column) the odd phase reads past the end is padding given to the
      # convolution: no padded copy of the input.
      cols.append(jax.lax.conv_general_dilated(x, taps, (1, 1), ((0, a), (0, c)),
                                               dimension_numbers=_DN))
    rows.append(jnp.stack(cols, axis=3))                 # [B, H, W, 2 (column phase), C_out]
  return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * w, kernel.shape[-1])


class ConvTranspose3x3s2(_SubPixelTranspose):
  """PyTorch's `ConvTranspose2d(C_in, features, 3, stride=2, padding=1, output_padding=1)` as a Flax
  module, computed with `conv_transpose_3x3_s2`. [B, H, W, C_in] -> [B, 2H, 2W, features]."""
  size = 3
  transpose = staticmethod(conv_transpose_3x3_s2)
