"""Convolutional autoregressive image models of the PixelCNN family.

- `PixelCNN`: van den Oord, Kalchbrenner & Kavukcuoglu 2016, "Pixel Recurrent Neural Networks"
  (arXiv:1601.06759), Table 1; layer for layer (and parameter for parameter) the PyTorch peer
  ../shared/bench/peer_torch_pixelcnn.py. Masked convolutions; it has the known blind spot (pixels
  above and to the right of the current one that its stacked 3x3 masks never reach).
- `GatedPixelCNN`: van den Oord et al. 2016, "Conditional Image Generation with PixelCNN Decoders"
  (arXiv:1606.05328), Fig. 2: a vertical stack (rows above) and a horizontal stack (pixels to the
  left) with gated units, optional class / vector conditioning. No blind spot.
- `PixelCNNpp`: Salimans, Karpathy, Chen & Kingma 2017, "PixelCNN++" (arXiv:1701.05517), as
  openai/pixel-cnn pixel_cnn_pp/model.py: shifted convolutions, gated ResNet blocks with concat_elu
  and dropout, three resolutions with U-Net-like short cuts, a discretized logistic mixture output.
  Differences from the reference: plain convolutions (jaxgen.nn.linear.Conv with LeCun-normal init)
  instead of weight normalisation with data-dependent init; the near-identity start of each gated
  block comes from a 0.1x initial scale of its second convolution (the reference's init_scale=0.1).

Every model maps x float32 [B, H, W, C] in [-1, 1] (binary data as -1 / +1) to float32 outputs at
every pixel that depend only on earlier pixels in raster order and, for per-channel outputs, on
earlier colour channels (R, G, B) of the same pixel; tests/test_pixelcnn_models.py checks this by
exact zero gradients. `train=True` enables dropout (rng collection "dropout") where a model has it.
Conditioning (all models): `labels` int [B] in [0, num_classes) and / or `cond` float [B, D]; both
enter as a learned linear map of [one_hot(labels), cond] (an embedding of the label plus V cond).
"""
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.nn.blocks import dropout as fast_dropout
from jaxgen.nn.linear import Conv, Dense
from jaxgen.nn.masked import (DownRightShiftedConv, DownRightShiftedConvTranspose, DownShiftedConv,
                              DownShiftedConvTranspose, MaskedConv, down_shift, right_shift)


def _check_inputs(model: str, x: jax.Array, channels: int, labels: Optional[jax.Array],
                  num_classes: int) -> None:
  if x.ndim != 4 or x.shape[-1] != channels:
    raise ValueError(f"{model}: expected images [B, H, W, {channels}] (channels={channels}), got "
                     f"shape {x.shape}; set channels to the data's channel count.")
  if labels is not None and not num_classes:
    raise ValueError(f"{model}: labels were given to an unconditional model (num_classes=0); pass "
                     "labels=None or set num_classes.")
  if num_classes and labels is None:
    raise ValueError(f"{model}: num_classes={num_classes} needs int labels [B]; pass labels=...")
  if labels is not None and labels.shape != x.shape[:1]:
    raise ValueError(f"{model}: labels must have shape [B]=({x.shape[0]},), got {labels.shape}.")


def _conditioning(labels: Optional[jax.Array], cond: Optional[jax.Array], num_classes: int,
                  dtype: Any) -> Optional[jax.Array]:
  """[B, num_classes + D]: one_hot(labels) and cond side by side, or None without either. A Dense
  without bias on it is V h of the Gated PixelCNN paper (a learned label embedding plus V cond)."""
  parts = []
  if labels is not None:
    parts.append(jax.nn.one_hot(labels, num_classes, dtype=dtype))
  if cond is not None:
    if cond.ndim != 2:
      raise ValueError(f"conditioning vectors must be [B, D], got shape {cond.shape}.")
    parts.append(cond.astype(dtype))
  return jnp.concatenate(parts, axis=-1) if parts else None


def _output_head(h: jax.Array, features: int, channels: int, num_values: int,
                 dtype: Any) -> jax.Array:
  """ReLU, 1x1 B (features), ReLU, 1x1 B (outputs): per-colour logits of the masked models.

  Returns float32 [B, H, W, C, num_values] (softmax logits; the last conv's channels are grouped by
  colour, [R values, G values, B values], as the peer's) or, for num_values == 1 (C = 1), float32
  [B, H, W, 1] Bernoulli logits of the +1 value.
  """
  if num_values < 1 or (num_values == 1 and channels != 1):
    raise ValueError(f"num_values={num_values} with channels={channels}: use num_values >= 2 "
                     "(a softmax per colour channel, e.g. 256) or num_values=1 with channels=1 "
                     "(a sigmoid logit for binary images).")
  h = MaskedConv(features, 1, "B", channels, dtype=dtype, name="out_1")(nn.relu(h))
  out = MaskedConv(channels * num_values, 1, "B", channels, dtype=dtype,
                   name="out_2")(nn.relu(h)).astype(jnp.float32)
  if num_values == 1:
    return out
  return out.reshape(*out.shape[:-1], channels, num_values)


class PixelCNN(nn.Module):
  """The PixelCNN of the PixelRNN paper (Table 1), as the PyTorch peer.

  7x7 type-A masked conv (2h) -> num_blocks x residual [ReLU, 1x1 B (2h -> h), ReLU, 3x3 B (h -> h),
  ReLU, 1x1 B (h -> 2h)] -> ReLU, 1x1 B (2h -> 2h) -> ReLU, 1x1 B (2h -> C * num_values).
  Parameters: C*2h*49 + 2h + num_blocks * (2h*h + h + 9h*h + h + 2h*h + 2h) + 4h^2 + 2h
  + 2h*C*V + C*V (conv kernels with their masked taps, and biases), exactly the peer's count.

  Attributes:
    channels: image channels C (1 or 3); also the number of colour groups of every mask.
    hidden: h.
    num_blocks: residual blocks.
    num_values: 256 (softmax over 8-bit values per colour channel) or 1 with channels=1 (sigmoid).
    num_classes: 0 = unconditional; else labels are required and a label embedding (and / or V cond
      with `cond`) is added to the 2h-channel stream after the first layer (not in the paper).
    dtype: compute dtype; params and outputs are float32.
  """
  channels: int = 3
  hidden: int = 128
  num_blocks: int = 15
  num_values: int = 256
  num_classes: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, labels: Optional[jax.Array] = None,
               cond: Optional[jax.Array] = None, *, train: bool) -> jax.Array:
    """x float [B, H, W, C] in [-1, 1] -> logits float32 [B, H, W, C, num_values] (or [B, H, W, 1]
    for num_values=1); output (i, c) depends on pixels before i and on channels < c of pixel i.
    `train` is unused (no dropout) but kept for the common signature."""
    del train
    _check_inputs("PixelCNN", x, self.channels, labels, self.num_classes)
    c, h2 = self.channels, 2 * self.hidden

    def conv(features, k, mask_type, name):
      return MaskedConv(features, k, mask_type, c, dtype=self.dtype, name=name)

    h = conv(h2, 7, "A", "conv_in")(x)
    ctx = _conditioning(labels, cond, self.num_classes, self.dtype)
    if ctx is not None:
      # A per-example bias: it does not depend on x, so causality is untouched.
      h = h + Dense(h2, use_bias=False, dtype=self.dtype, name="cond_proj")(ctx)[:, None, None, :]
    for i in range(self.num_blocks):
      r = conv(self.hidden, 1, "B", f"block_{i}_conv_1")(nn.relu(h))
      r = conv(self.hidden, 3, "B", f"block_{i}_conv_2")(nn.relu(r))
      r = conv(h2, 1, "B", f"block_{i}_conv_3")(nn.relu(r))
      h = h + r
    return _output_head(h, h2, c, self.num_values, self.dtype)


def _gate(x: jax.Array) -> jax.Array:
  """[..., 2p] -> [..., p]: tanh(first half) * sigmoid(second half)."""
  f, g = jnp.split(x, 2, axis=-1)
  return jnp.tanh(f) * jax.nn.sigmoid(g)


class GatedPixelCNN(nn.Module):
  """Gated PixelCNN (van den Oord et al. 2016b, Fig. 2), conditional on labels and / or vectors.

  Layer l (kernel k: `first_kernel_size` for l = 0, else `kernel_size`; both odd), with p = hidden:
    vertical:   v' = conv_(k//2+1) x k (v)  (rows i - k//2 .. i, columns j - k//2 .. j + k//2; 2p)
    horizontal: h' = conv_1 x (k//2+1) (h)  (pixels j - k//2 .. j of row i, colour-masked: mask A
                for l = 0, so the pixel's own colour and later ones are excluded; B after; 2p)
                + conv_1x1(down_shift(v'))  (the link sees only rows above, so nothing leaks)
    both gates + V [one_hot(labels), cond];  v = tanh * sigmoid(v'),  g = tanh * sigmoid(h')
    h = h + conv_1x1 B (g)  (no residual at l = 0, whose input is the image itself).
  The vertical stack may look at the current row because only its down-shifted features reach the
  horizontal stack. Then the PixelCNN head: ReLU, 1x1 B (p), ReLU, 1x1 B (C * num_values).
  After L layers output (i, j) sees exactly rows i - 1 - R .. i - 1, columns j - R .. j + R, and
  pixels j - R .. j - 1 of row i, with R = first_kernel_size // 2 + (L - 1) * (kernel_size // 2).

  Attributes:
    channels: image channels C (1 or 3; colour groups of the horizontal stack's masks).
    hidden: p, channels of each stack (>= C).
    num_layers: gated layers L.
    kernel_size, first_kernel_size: n of the n x n receptive field per layer.
    num_values: as `PixelCNN`.
    num_classes: 0 = no labels; else int labels [B] are required.
    dtype: compute dtype; params and outputs float32.
  """
  channels: int = 3
  hidden: int = 128
  num_layers: int = 15
  kernel_size: int = 3
  first_kernel_size: int = 7
  num_values: int = 256
  num_classes: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, labels: Optional[jax.Array] = None,
               cond: Optional[jax.Array] = None, *, train: bool) -> jax.Array:
    """x float [B, H, W, C] in [-1, 1], labels int [B], cond float [B, D] -> logits as `PixelCNN`.
    `train` is unused (no dropout)."""
    del train
    _check_inputs("GatedPixelCNN", x, self.channels, labels, self.num_classes)
    for k in (self.kernel_size, self.first_kernel_size):
      if k % 2 == 0 or k < 1:
        raise ValueError(f"GatedPixelCNN: kernel sizes must be odd, got {k}.")
    c, p2 = self.channels, 2 * self.hidden
    ctx = _conditioning(labels, cond, self.num_classes, self.dtype)
    v = h = x.astype(self.dtype)
    for l in range(self.num_layers):
      k = self.first_kernel_size if l == 0 else self.kernel_size
      mask_type = "A" if l == 0 else "B"
      v_pre = Conv(p2, (k // 2 + 1, k), padding=((k // 2, 0), (k // 2, k // 2)), dtype=self.dtype,
                   name=f"layer_{l}_vertical")(v)
      # out_blocks=2: the tanh and sigmoid halves are colour-grouped each, so a gate multiplies
      # features of one colour.
      h_pre = MaskedConv(p2, (1, k // 2 + 1), mask_type, c, centre=(0, k // 2), out_blocks=2,
                         dtype=self.dtype, name=f"layer_{l}_horizontal")(h)
      h_pre = h_pre + Conv(p2, (1, 1), padding="VALID", dtype=self.dtype,
                           name=f"layer_{l}_link")(down_shift(v_pre))
      if ctx is not None:
        dense = lambda name: Dense(p2, use_bias=False, dtype=self.dtype, name=name)  # noqa: E731
        v_pre = v_pre + dense(f"layer_{l}_vertical_cond")(ctx)[:, None, None, :]
        h_pre = h_pre + dense(f"layer_{l}_horizontal_cond")(ctx)[:, None, None, :]
      v = _gate(v_pre)
      r = MaskedConv(self.hidden, 1, "B", c, dtype=self.dtype,
                     name=f"layer_{l}_residual")(_gate(h_pre))
      h = r if l == 0 else h + r
    return _output_head(h, self.hidden, c, self.num_values, self.dtype)


def concat_elu(x: jax.Array) -> jax.Array:
  """[..., C] -> [..., 2C]: ELU of [x, -x] (PixelCNN++'s nonlinearity; keeps both signs)."""
  return nn.elu(jnp.concatenate([x, -x], axis=-1))


class GatedResnet(nn.Module):
  """PixelCNN++ `gated_resnet`: x + a * sigmoid(b), where
  [a, b] = conv(dropout(concat_elu(conv(concat_elu(x)) + nin(concat_elu(skip))))) + V ctx.

  Attributes:
    shift: "down" ((2, 3) down-shifted convs, the u stream) or "down_right" ((2, 2), the ul stream).
    dropout: rate on the middle activations (rng collection "dropout", train=True only).
    dtype: compute dtype.
    weight_norm: weight-normalised convs with data-dependent init (jaxgen.nn.linear
      .weight_norm_kernel), the second one at init_scale 0.1, as the reference.
  """
  shift: str
  dropout: float = 0.5
  dtype: Any = jnp.float32
  weight_norm: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, skip: Optional[jax.Array] = None,
               ctx: Optional[jax.Array] = None, *, train: bool) -> jax.Array:
    """x [B, H, W, F], skip [B, H, W, F'] or None, ctx [B, K] or None -> [B, H, W, F]."""
    conv = {"down": DownShiftedConv, "down_right": DownRightShiftedConv}[self.shift]
    f, wn = x.shape[-1], self.weight_norm
    c1 = conv(f, dtype=self.dtype, weight_norm=wn, name="conv_1")(concat_elu(x))
    if skip is not None:
      c1 = c1 + Conv(f, (1, 1), padding="VALID", dtype=self.dtype, weight_norm=wn,
                     name="skip")(concat_elu(skip))
    c1 = concat_elu(c1)
    if train and self.dropout > 0:
      c1 = fast_dropout(c1, self.dropout, self.make_rng("dropout"))
    # 0.1x the usual initial std (variance 0.01x): the block starts close to the identity.
    c2 = conv(2 * f, dtype=self.dtype, name="conv_2", weight_norm=wn, init_scale=0.1,
              kernel_init=nn.initializers.variance_scaling(0.01, "fan_in", "truncated_normal"))(c1)
    if ctx is not None:
      c2 = c2 + Dense(2 * f, use_bias=False, dtype=self.dtype, name="cond")(ctx)[:, None, None, :]
    a, b = jnp.split(c2, 2, axis=-1)
    return x + a * jax.nn.sigmoid(b)


class PixelCNNpp(nn.Module):
  """PixelCNN++ (openai/pixel-cnn pixel_cnn_pp/model.py), with the paper's CIFAR-10 defaults.

  Two streams: u (down-shifted convs: rows above) and ul (down- and down-right-shifted: rows above
  and pixels to the left). The input gets a channel of ones so the convolutions can tell image from
  zero padding. "Up" pass, at sides S, S/2, S/4: the input layers, nr_resnet gated blocks per
  resolution (ul's blocks also see u), stride-2 shifted convs between resolutions; every output is
  pushed on a stack. "Down" pass: nr_resnet blocks at S/4, then nr_resnet + 1 at S/2 and at S (after
  stride-2 shifted transposed convs), each popping a short cut (u gets u's, ul gets [u, ul's]). Then
  a 1x1 conv of elu(ul). Output (i, j) depends only on pixels before (i, j) in raster order (none of
  pixel (i, j)'s channels): the colour order inside a pixel lives in the mixture's coefficients.

  Output channels (float32 [B, H, W, n], M = nr_logistic_mix), the layout openai's
  `discretized_mix_logistic_loss` / `sample_from_discretized_mix_logistic` read:
    C = 3, n = 10 M:  [0, M) mixture logits; then for colour c in (R, G, B) a block of 3M at
      M + 3 M c: [means_c (M), log_scales_c (M; the loss clamps at -7), coeffs_c (M, pre-tanh)],
      where coeffs_R, coeffs_G, coeffs_B are the R->G, R->B and G->B coefficients of the means:
      mean_G += tanh(coeffs_R) x_R, mean_B += tanh(coeffs_G) x_R + tanh(coeffs_B) x_G.
    C = 1, n = 3 M:   [mixture logits (M), means (M), log_scales (M)].

  Attributes:
    channels: 1 or 3.
    nr_resnet: gated blocks per resolution in the up pass (one more in the down pass's last two).
    nr_filters: channels of both streams.
    nr_logistic_mix: mixture components M.
    dropout: rate inside every gated block (train=True only; rng collection "dropout").
    num_classes: 0 = no labels; else int labels [B] are required (V h in every block).
    dtype: compute dtype; params and outputs float32.
    weight_norm: every convolution weight-normalised with data-dependent init, as the reference
      (jaxgen.nn.linear.weight_norm_kernel; `init` must then see a real batch). The label
      projection stays a plain Dense (the reference's `hw` is not normalised either).
  """
  channels: int = 3
  nr_resnet: int = 5
  nr_filters: int = 160
  nr_logistic_mix: int = 10
  dropout: float = 0.5
  num_classes: int = 0
  dtype: Any = jnp.float32
  weight_norm: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, labels: Optional[jax.Array] = None,
               cond: Optional[jax.Array] = None, *, train: bool) -> jax.Array:
    """x float [B, H, W, C] in [-1, 1] (H, W divisible by 4), labels int [B], cond float [B, D] ->
    float32 [B, H, W, 10 M] (C = 3) or [B, H, W, 3 M] (C = 1); layout in the class docstring."""
    _check_inputs("PixelCNNpp", x, self.channels, labels, self.num_classes)
    if self.channels not in (1, 3):
      raise ValueError(f"PixelCNNpp: channels must be 1 or 3 (the mixture layouts), got "
                       f"{self.channels}.")
    if x.shape[1] % 4 or x.shape[2] % 4:
      raise ValueError(f"PixelCNNpp: image sides must be divisible by 4 (two stride-2 levels), got "
                       f"{x.shape[1]}x{x.shape[2]}; pad or crop the images.")
    nf, dt, wn = self.nr_filters, self.dtype, self.weight_norm
    ctx = _conditioning(labels, cond, self.num_classes, dt)

    def res(shift, name):
      block = GatedResnet(shift, self.dropout, dt, weight_norm=wn, name=name)
      return lambda h, skip=None: block(h, skip, ctx, train=train)

    x = x.astype(dt)
    x = jnp.concatenate([x, jnp.ones((*x.shape[:-1], 1), dt)], axis=-1)
    u_list = [down_shift(DownShiftedConv(nf, (2, 3), dtype=dt, weight_norm=wn, name="u_in")(x))]
    ul_list = [down_shift(DownShiftedConv(nf, (1, 3), dtype=dt, weight_norm=wn, name="ul_in_above")(x)) +
               right_shift(DownRightShiftedConv(nf, (2, 1), dtype=dt, weight_norm=wn,
                                                name="ul_in_left")(x))]

    # Up pass (the reference's name): full, half and quarter resolution.
    for level in range(3):
      if level:
        u_list.append(DownShiftedConv(nf, strides=2, dtype=dt, weight_norm=wn,
                                      name=f"up_{level}_u_down")(u_list[-1]))
        ul_list.append(DownRightShiftedConv(nf, strides=2, dtype=dt, weight_norm=wn,
                                            name=f"up_{level}_ul_down")(ul_list[-1]))
      for j in range(self.nr_resnet):
        u_list.append(res("down", f"up_{level}_u_res_{j}")(u_list[-1]))
        ul_list.append(res("down_right", f"up_{level}_ul_res_{j}")(ul_list[-1], u_list[-1]))

    # Down pass: pop the short cuts in reverse order.
    u, ul = u_list.pop(), ul_list.pop()
    for level in reversed(range(3)):
      for j in range(self.nr_resnet + (level < 2)):
        u = res("down", f"down_{level}_u_res_{j}")(u, u_list.pop())
        ul = res("down_right", f"down_{level}_ul_res_{j}")(
            ul, jnp.concatenate([u, ul_list.pop()], axis=-1))
      if level:
        u = DownShiftedConvTranspose(nf, dtype=dt, weight_norm=wn, name=f"down_{level}_u_up")(u)
        ul = DownRightShiftedConvTranspose(nf, dtype=dt, weight_norm=wn,
                                           name=f"down_{level}_ul_up")(ul)
    assert not u_list and not ul_list, "every short cut is used once"

    per_mix = 10 if self.channels == 3 else 3
    out = Conv(per_mix * self.nr_logistic_mix, (1, 1), padding="VALID", dtype=dt, weight_norm=wn,
               name="conv_out")(nn.elu(ul))
    return out.astype(jnp.float32)
