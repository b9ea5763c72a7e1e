"""PixelRNN's recurrent models (van den Oord, Kalchbrenner & Kavukcuoglu 2016, arXiv:1601.06759).

Sec. 3.1-3.4 and Table 1 of the paper:
  7x7 conv, mask A -> num_layers x (Row LSTM | Diagonal BiLSTM, 1x1 conv h -> 2h (mask B),
  + residual) -> ReLU, 1x1 conv (mask B), ReLU, 1x1 conv (mask B) -> 256-way softmax per colour
  channel (R -> G -> B) or, for binarized MNIST, a sigmoid.

Masks (Sec. 3.4). The features of every layer are split into colour groups in thirds: channel i of
C is in group i * colors // C (colors = 3 for RGB, 1 for grey). At the centre tap of a masked
kernel, output group g sees input groups < g (mask A, the first layer only, so that a channel
never sees itself) or <= g (mask B, every later layer); taps at earlier pixels (rows above, or
the same row to the left) see every group and taps at later pixels none. The LSTM's gates are four
blocks of h channels and each block is grouped like the h-channel state, so that the cell update,
elementwise per state channel, mixes only one group. The state-to-state convolutions see earlier
pixels only and need no mask.

Receptive fields (tests/test_pixelrnn_models.py checks them exactly). A Row LSTM layer sees a
triangle above the pixel; a Diagonal BiLSTM layer sees every earlier pixel. The whole model adds one
blind spot of the 7x7 mask-A input conv, whatever the layers: the last colour of a row's last pixel
(r, W - 1) enters no feature at (r, W - 1) (mask A) and, in row r + 1, only features at columns
>= W - 4 (the conv's reach), so the outputs (r + 1, c < W - 4) do not see it.

The paper's settings: binarized MNIST, Diagonal BiLSTM, 7 layers, h = 16; CIFAR-10, 12 layers with
h = 128. The defaults here (h = 32, 7 layers) are an MNIST-sized model.
"""
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.nn.linear import bias_add

LAYER_TYPES = ("row_lstm", "diagonal_bilstm")


def _groups(num_channels: int, colors: int, blocks: int = 1) -> np.ndarray:
  """Colour group (0 .. colors - 1) of each of blocks * num_channels channels; every block of
  num_channels channels (e.g. each LSTM gate) is grouped in thirds like a plain layer."""
  return np.tile(np.arange(num_channels) * colors // num_channels, blocks)


def _color_mask(kernel_size: tuple[int, int], in_groups: np.ndarray, out_groups: np.ndarray,
                mask_type: str) -> np.ndarray:
  """The 0/1 float32 mask [kh, kw, C_in, C_out] (HWIO) of a causal colour-masked convolution.

  Taps in rows above the centre, and left of it in the centre row, are earlier pixels: all ones.
  Taps right of the centre and below it are later pixels: zeros. At the centre, output channel o
  sees input channel i iff group(i) < group(o) (mask "A") or group(i) <= group(o) (mask "B").
  """
  if mask_type not in ("A", "B"):
    raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}.")
  kh, kw = kernel_size
  if kh % 2 == 0 or kw % 2 == 0:
    raise ValueError(f"masked convolutions need odd kernel sizes (a centre tap), got "
                     f"{kernel_size}.")
  ch, cw = kh // 2, kw // 2
  mask = np.zeros((kh, kw, len(in_groups), len(out_groups)), np.float32)
  mask[:ch] = 1.0
  mask[ch, :cw] = 1.0
  sees = np.less if mask_type == "A" else np.less_equal
  mask[ch, cw] = sees(in_groups[:, None], out_groups[None, :])
  return mask


class _MaskedConv(nn.Module):
  """Stride-1 "SAME" convolution with a colour mask (see `_color_mask`); NHWC -> NHWC.

  The kernel param is [kh, kw, C_in, C_out] like `jaxgen.nn.linear.Conv`'s; the convolution uses
  kernel * mask, so the masked taps are exact zeros and their gradients with respect to the input
  are exactly zero too (what tests/test_pixelrnn_models.py checks).

  Attributes:
    features: output channels (blocks * the per-block count).
    kernel_size: (kh, kw), both odd.
    mask_type: "A" (centre excludes the own colour group) or "B" (includes it).
    colors: colour groups, 3 for RGB or 1 for grey.
    out_blocks: the output is out_blocks blocks each grouped in thirds (4 for LSTM gates).
    use_bias: adds a [features] bias.
    dtype: compute dtype (params float32).
  """
  features: int
  kernel_size: tuple[int, int]
  mask_type: str
  colors: int
  out_blocks: int = 1
  use_bias: bool = True
  dtype: Any = jnp.float32
  kernel_init: Callable[..., Any] = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.features % self.out_blocks:
      raise ValueError(f"_MaskedConv: features={self.features} is not a multiple of "
                       f"out_blocks={self.out_blocks}.")
    c_in = x.shape[-1]
    mask = _color_mask(tuple(self.kernel_size), _groups(c_in, self.colors),
                       _groups(self.features // self.out_blocks, self.colors, self.out_blocks),
                       self.mask_type)
    kernel = self.param("kernel", self.kernel_init, mask.shape, jnp.float32)
    kernel = (kernel * mask).astype(self.dtype)
    kh, kw = self.kernel_size
    y = jax.lax.conv_general_dilated(
        x.astype(self.dtype), kernel, (1, 1), ((kh // 2, kh // 2), (kw // 2, kw // 2)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.use_bias:
      y = bias_add(y, self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32))
    return y


def _taps(h: jax.Array, k: int, before: int) -> jax.Array:
  """[..., L, h] -> [..., L, k * h]: position l holds h[l - before + j] for the taps j = 0 .. k - 1
  (zeros outside 0 .. L - 1), so that `_taps(h, k, before) @ kernel.reshape(k * h, n)` is the
  1-d convolution of h with a [k, h, n] kernel, zero-padded (before, k - 1 - before). One matmul
  per recurrence step instead of a small convolution: the scan's step is dominated by per-op
  overhead on CPU, and a dot (with its transpose in the backward pass) is the cheapest op there is.
  """
  length = h.shape[-2]
  hp = jnp.pad(h, [(0, 0)] * (h.ndim - 2) + [(before, k - 1 - before), (0, 0)])
  return jnp.concatenate([hp[..., j:j + length, :] for j in range(k)], axis=-1)


def _lstm_cell(gates: jax.Array, c_prev: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Eq. 3 of the paper: gates [..., 4h] = pre-activations of [o, f, i, g]; c_prev [..., h] float32.

  Returns (h [..., h] in the gates' dtype, c [..., h] float32). The cell state is kept in float32
  so that a bfloat16 compute dtype does not accumulate rounding along the recurrence.
  """
  o, f, i, g = jnp.split(gates.astype(jnp.float32), 4, axis=-1)
  c = jax.nn.sigmoid(f) * c_prev + jax.nn.sigmoid(i) * jnp.tanh(g)
  h = jax.nn.sigmoid(o) * jnp.tanh(c)
  return h.astype(gates.dtype), c


class RowLSTM(nn.Module):
  """Row LSTM layer (Sec. 3.1): rows are processed top to bottom, a whole row at a time.

  Input-to-state: the paper's "k x 1" (k = 3) convolution, here a [1, k] kernel along the row, with
  mask B (so the current pixel, in
  its own and earlier colour groups, and the pixel to its left), computed for the whole image at
  once. State-to-state: an unmasked 1-d convolution of size k = 3 over the previous row's hidden
  states (pixels above-left, above and above-right, all earlier in raster order). The receptive
  field is a triangle above the pixel (widening by one column per row on each side), plus a few
  pixels to the left in the current row.

  Attributes:
    hidden: h, channels of the state (the gates have 4h).
    colors: colour groups of the features (3 for RGB, 1 for grey).
    kernel_size: k of both convolutions (odd).
    dtype: compute dtype; params and the cell state are float32.
  """
  hidden: int
  colors: int
  kernel_size: int = 3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [B, H, W, C_in] features -> [B, H, W, hidden] hidden states (compute dtype)."""
    b, height, width, _ = x.shape
    h, k = self.hidden, self.kernel_size
    x_gates = _MaskedConv(4 * h, (1, k), "B", self.colors, out_blocks=4, dtype=self.dtype,
                          name="input_to_state")(x)                       # [B, H, W, 4h]
    k_ss = self.param("state_to_state", nn.initializers.lecun_normal(), (k, h, 4 * h),
                      jnp.float32).astype(self.dtype).reshape(k * h, 4 * h)

    def step(carry, x_row):
      h_prev, c_prev = carry                                             # [B, W, h]
      # Pixels above-left, above and above-right: taps at columns c - 1, c, c + 1 (k = 3).
      gates = x_row + _taps(h_prev, k, k // 2) @ k_ss
      h_row, c_row = _lstm_cell(gates, c_prev)
      return (h_row, c_row), h_row

    # The state above the first row is zero (no earlier rows).
    init = (jnp.zeros((b, width, h), self.dtype), jnp.zeros((b, width, h), jnp.float32))
    _, hs = jax.lax.scan(step, init, jnp.moveaxis(x_gates, 1, 0))      # [H, B, W, h]
    return jnp.moveaxis(hs, 0, 1)


def skew(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, H, W + H - 1, C]: row r shifted right by r (zeros around it), so that
  pixel (r, c) lands at column r + c and each anti-diagonal of the image becomes one column."""
  b, height, width, c = x.shape
  # Pad each row to W + H, flatten, and re-read with rows of W + H - 1: row r then starts r
  # elements earlier in the flat array, i.e. its pixels move r columns right; what fills the r
  # columns before them is the previous row's zero padding. No gather, so it is cheap on every
  # backend and its gradient is the same reshape.
  x = jnp.pad(x, ((0, 0), (0, 0), (0, height), (0, 0)))
  x = x.reshape(b, height * (width + height), c)[:, :height * (width + height - 1)]
  return x.reshape(b, height, width + height - 1, c)


def unskew(x: jax.Array, width: int) -> jax.Array:
  """Inverse of `skew`: [B, H, W + H - 1, C] -> [B, H, W, C], row r read from columns r .. r+W-1."""
  b, height, skewed, c = x.shape
  if skewed != width + height - 1:
    raise ValueError(f"unskew: {skewed} columns do not fit width {width} and height {height}; a "
                     f"skewed map has width + height - 1 = {width + height - 1}.")
  # The reverse trick: re-read with rows of W + H, so row r starts r elements later.
  x = jnp.pad(x.reshape(b, height * skewed, c), ((0, 0), (0, height), (0, 0)))
  return x.reshape(b, height, skewed + 1, c)[:, :, :width]


def _combine_directions(left_to_right: jax.Array, right_to_left: jax.Array,
                        shift: bool = True) -> jax.Array:
  """Sum of the two directions' [B, H, W, h] outputs, the right-to-left one shifted down a row.

  The right-to-left direction at (r, c) has seen (r, c + 1 ..), later pixels of its own row.
  Shifting it down by one row (zeros in row 0) makes row r see only its value at row r - 1, which
  covers rows < r, all earlier (Sec. 3.2). shift=False exists only for the test that shows the
  leak without the shift; never use it in a model.
  """
  if shift:
    right_to_left = jnp.pad(right_to_left, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :-1]
  return left_to_right + right_to_left


class DiagonalBiLSTM(nn.Module):
  """Diagonal BiLSTM layer (Sec. 3.2): two diagonal LSTMs, left-to-right and right-to-left (the
  latter run on the image flipped along W), combined by `_combine_directions`. Output (r, c) sees
  every earlier pixel of the input, and its own pixel's colour groups <= its own (mask B).

  One direction scans the image's anti-diagonals from the top-left corner, each pixel seeing the
  pixel above it and the pixel to its left. Input-to-state: a 1x1 convolution, mask B. In the
  skewed map (`skew`) pixel (r, c) sits at column r + c, so the pixel above, (r - 1, c), is at
  (r - 1, r + c - 1) and the pixel to the left, (r, c - 1), is at (r, r + c - 1): both in the
  previous column. State-to-state is therefore an unmasked convolution of size 2 along the
  previous column's hidden states (the paper's "2 x 1"), and the recurrence runs over the
  W + H - 1 columns. Zeros skewed in around the image only ever feed other padding positions or
  carry bias-only constants, never pixel values.

  Both directions run in one `lax.scan`, stacked on a leading axis of 2 (each with its own
  state-to-state kernel), and their 1x1 input-to-state convolutions are one convolution with 8h
  outputs: a 1x1 convolution commutes with flipping W and with the skew, so it runs once on the
  W unflipped columns. Params: input_to_state [1, 1, C_in, 8h] (left-to-right gates, then
  right-to-left), state_to_state [2 (direction), 2 (tap: above, same row), h, 4h].

  Attributes:
    hidden: h, channels of the state of each direction (and of the output).
    colors: colour groups of the features.
    dtype: compute dtype; params and the cell states are float32.
  """
  hidden: int
  colors: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [B, H, W, C_in] features -> [B, H, W, hidden]."""
    b, height, width, _ = x.shape
    h = self.hidden
    gates = _MaskedConv(8 * h, (1, 1), "B", self.colors, out_blocks=8, dtype=self.dtype,
                        name="input_to_state")(x)                         # [B, H, W, 8h]
    gates = jnp.stack([gates[..., :4 * h], gates[..., 4 * h:][:, :, ::-1]])  # [2, B, H, W, 4h]
    skewed = width + height - 1
    gates = skew(gates.reshape(2 * b, height, width, 4 * h)).reshape(2, b, height, skewed, 4 * h)
    # Fan-in 2h per direction, as one [2, h, 4h] kernel would have.
    k_ss = self.param("state_to_state", nn.initializers.lecun_normal(batch_axis=(0,)),
                      (2, 2, h, 4 * h), jnp.float32).astype(self.dtype).reshape(2, 2 * h, 4 * h)

    def step(carry, x_col):
      h_prev, c_prev = carry                                             # [2, B, H, h]
      # Taps (before 1): row r reads rows r - 1 and r of the previous column.
      gates = x_col + jnp.einsum("dbrk,dkg->dbrg", _taps(h_prev, 2, 1), k_ss)
      h_col, c_col = _lstm_cell(gates, c_prev)
      return (h_col, c_col), h_col

    init = (jnp.zeros((2, b, height, h), self.dtype), jnp.zeros((2, b, height, h), jnp.float32))
    _, hs = jax.lax.scan(step, init, jnp.moveaxis(gates, 3, 0))       # [W + H - 1, 2, B, H, h]
    hs = unskew(jnp.moveaxis(hs, 0, 3).reshape(2 * b, height, skewed, h), width)
    hs = hs.reshape(2, b, height, width, h)
    return _combine_directions(hs[0], hs[1][:, :, ::-1])


class PixelRNN(nn.Module):
  """PixelRNN (Table 1 of the paper): logits of p(x_i | x_<i) for every pixel and colour channel.

  7x7 conv (mask A) to 2h features -> num_layers x [recurrent layer (2h -> h), 1x1 conv h -> 2h
  (mask B), + the layer's input (Sec. 3.3)] -> ReLU, 1x1 conv (mask B) to head_features, ReLU,
  1x1 conv (mask B) to the logits. Logit (pixel i, channel c) depends only on pixels before i in
  raster order and on channels < c of pixel i (R -> G -> B).

  Attributes:
    channels: C, 1 (grey / binary) or 3 (RGB).
    hidden: h, state channels of each recurrent layer (per direction for the Diagonal BiLSTM). The
      paper: 16 for binarized MNIST, 128 for CIFAR-10; the default 32 is an MNIST-sized model.
    num_layers: recurrent layers (the paper: 7 on MNIST with the Diagonal BiLSTM, 12 on CIFAR-10).
    layer_type: "row_lstm" or "diagonal_bilstm".
    num_values: 256 -> a softmax over the values 0..255 of each channel; 1 (with channels=1) -> a
      sigmoid logit of p(pixel = 1) for binarized images.
    head_features: channels of the hidden 1x1 output layer; None -> 2h.
    dtype: compute dtype; params, the LSTM cell states and the logits are float32.
  """
  channels: int
  hidden: int = 32
  num_layers: int = 7
  layer_type: str = "diagonal_bilstm"
  num_values: int = 256
  head_features: Optional[int] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Runs the network (teacher forcing: all conditionals at once).

    Args:
      x: float32 [B, H, W, C] images in [-1, 1] (binary data as -1 / +1).
      train: unused (the paper's models have no dropout); kept for the method interface.

    Returns:
      num_values=256: float32 logits [B, H, W, C, 256] (softmax over the last axis);
      num_values=1: float32 sigmoid logits [B, H, W, 1].
    """
    del train
    if self.channels not in (1, 3):
      raise ValueError(f"PixelRNN: channels={self.channels}; use 1 (grey/binary) or 3 (RGB).")
    if x.ndim != 4 or x.shape[-1] != self.channels:
      raise ValueError(f"PixelRNN: expected [B, H, W, {self.channels}] images, got {x.shape}.")
    if self.layer_type not in LAYER_TYPES:
      raise ValueError(f"PixelRNN: layer_type={self.layer_type!r}; use one of {LAYER_TYPES}.")
    if self.num_values == 1 and self.channels != 1:
      raise ValueError("PixelRNN: num_values=1 (sigmoid) is for binary single-channel images; "
                       f"with channels={self.channels} use num_values=256.")
    if self.num_values < 1:
      raise ValueError(f"PixelRNN: num_values={self.num_values}; use 256 or 1.")
    if self.hidden < self.channels:
      raise ValueError(f"PixelRNN: hidden={self.hidden} < channels={self.channels} leaves a colour "
                       "group without features; use hidden >= 3 for RGB.")

    colors, h = self.channels, self.hidden
    conv = lambda f, k, m, name: _MaskedConv(f, (k, k), m, colors, dtype=self.dtype,  # noqa: E731
                                             name=name)
    layer = RowLSTM if self.layer_type == "row_lstm" else DiagonalBiLSTM
    y = conv(2 * h, 7, "A", "conv_in")(x)
    for i in range(self.num_layers):
      out = layer(h, colors, dtype=self.dtype, name=f"layer_{i}")(y)
      y = y + conv(2 * h, 1, "B", f"layer_{i}_up")(out)
    y = conv(self.head_features or 2 * h, 1, "B", "head_hidden")(nn.relu(y))
    y = conv(self.channels * self.num_values, 1, "B", "head_out")(nn.relu(y)).astype(jnp.float32)
    if self.num_values == 1:
      return y
    # Channel index c * num_values + v is in colour group c (see `_groups`).
    return y.reshape(*y.shape[:3], self.channels, self.num_values)
