"""Cached ("fast") sampling of the masked convolutional models: `PixelCNN` and `GatedPixelCNN`.

The naive sampler (jaxgen.methods.autoregressive) runs the whole network on the whole canvas once
per (pixel, channel) position: H W C full forward passes. Here, as in Fast PixelCNN++ (Ramachandran
et al. 2017, arXiv:1704.06001), every layer keeps a cache of its input over the image and, at each
new position, only the outputs at the current pixel are computed, from the k x k window of the
cache below (the masked kernel applied to the window as one matrix product), and written into the
cache of the layer above. The trained params tree of the Flax module is used unchanged (same names,
same masks from jaxgen.nn.masked), and the keys are the naive sampler's: position i (raster order,
channels R -> G -> B inside a pixel) draws with `jax.random.fold_in(rng, i)`, categorical values
with `jax.random.categorical` on float32 logits [B, V], binary ones with
`jax.random.bernoulli(key, sigmoid(logit))`. So for the same rng both samplers give the same images
(up to float summation order: the window products and the full convolutions add the same terms in
another order, ~1e-6 apart, which could flip a draw only at a near tie).

Why a cached activation never changes once written (exactness). Every layer is causal: its output
at pixel p, colour group g depends only on pixels before p in raster order and, at p itself, on
groups < g of the image (mask A first, masks B after, which pass group <= g to group g).
- PixelCNN. Caches: the zero-padded image canvas (input of the 7x7 mask-A conv; 4 x 7 window, the
  rows below the centre are masked) and, per residual block, relu of its first 1x1 conv (input of
  its 3x3 mask-B conv; 2 x 3 window). At position (p, ch) the whole column of layers at pixel p is
  recomputed from the canvas, on which channels < ch of p are set; its groups <= ch are then final
  (they see only those channels and earlier pixels), the later groups are overwritten at the next
  channel step and final after the last one. Windows read earlier pixels (final since their own
  last channel step), the centre (just written, in this step) and masked taps (zero weights on
  not-yet-sampled cache entries, which are finite zeros). So each logit equals the full network's
  on the partially sampled canvas.
- GatedPixelCNN. The horizontal stack is per pixel as above; its inputs are row buffers of the
  current row (the 1 x (k//2+1) windows see only pixels j - k//2 .. j of row i). The vertical stack
  at row i sees rows i - k//2 .. i, including pixels right of the current one, but reaches the
  horizontal stack only down-shifted (row i - 1): so each row of every vertical layer is computed
  once, as a row convolution over its cache, when the image row is complete, and the link 1x1 conv
  of the finished row is kept for the next row's pixels (row 0 gets the link of zeros: its bias).

Cost per position: one column of layers at one pixel (plus, once per row, one row of the vertical
stack) instead of the full network over H W pixels. Everything runs in one compiled loop
(`lax.fori_loop` over positions; rows then positions for the Gated PixelCNN).

API: `supports(model)`, `sample(model, params, rng, num, image_size, labels=None, cond=None)` ->
float32 [num, H, W, C] in [-1, 1], and `sample_with_logits` (the same plus every position's logits,
for tests).
"""
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen import progress
from jaxgen.models.pixelcnn import GatedPixelCNN, PixelCNN, _conditioning
from jaxgen.nn.masked import causal_mask


def supports(model: nn.Module) -> bool:
  """Whether `model` has a cached sampler here (PixelCNN, GatedPixelCNN)."""
  return isinstance(model, (PixelCNN, GatedPixelCNN))


# ---- helpers ------------------------------------------------------------------------------------
def _masked(p, mask_type: str, colors: int, dt: Any, centre=None, out_blocks: int = 1,
            rows: Optional[int] = None) -> jax.Array:
  """A MaskedConv's kernel * mask in the compute dtype (as MaskedConv does), keeping the first
  `rows` kernel rows (the rows below the centre are all masked) and flattened to a matrix
  [rows * kw * in, out] for windows flattened in (row, col, channel) order."""
  k = p["kernel"]
  kh, kw, cin, cout = k.shape
  mask = causal_mask((kh, kw), cin, cout, mask_type, colors, centre, out_blocks)
  k = (k * jnp.asarray(mask, k.dtype)).astype(dt)
  k = k[:rows] if rows is not None else k
  return k.reshape(-1, cout)


def _dot(x: jax.Array, k: jax.Array) -> jax.Array:
  return jax.lax.dot_general(x.astype(k.dtype), k, (((x.ndim - 1,), (0,)), ((), ())))


def _bias(y: jax.Array, p) -> jax.Array:
  return y + p["bias"].astype(y.dtype)


def _window(cache: jax.Array, row, col, kh: int, kw: int) -> jax.Array:
  """cache [B, Hp, Wp, F] -> [B, kh * kw * F]: the window whose top-left is (row, col)."""
  b, f = cache.shape[0], cache.shape[-1]
  return jax.lax.dynamic_slice(cache, (0, row, col, 0), (b, kh, kw, f)).reshape(b, -1)


def _write(cache: jax.Array, value: jax.Array, row, col) -> jax.Array:
  """cache [B, Hp, Wp, F] with value [B, F] written at (row, col)."""
  return jax.lax.dynamic_update_slice(cache, value[:, None, None, :].astype(cache.dtype),
                                      (0, row, col, 0))


def _ctx_bias(model, params, name: str, ctx: Optional[jax.Array]) -> Optional[jax.Array]:
  """The per-example bias Dense(ctx) [B, F] of a conditional layer (None without conditioning)."""
  if ctx is None:
    return None
  return _dot(ctx.astype(model.dtype), params[name]["kernel"].astype(model.dtype))


class _Head:
  """ReLU, 1x1 B, ReLU, 1x1 B at one pixel: [B, F] -> float32 [B, C * V] (models.pixelcnn)."""

  def __init__(self, params, colors: int, dt: Any):
    self.p1, self.p2 = params["out_1"], params["out_2"]
    self.k1 = _masked(self.p1, "B", colors, dt)
    self.k2 = _masked(self.p2, "B", colors, dt)

  def __call__(self, h: jax.Array) -> jax.Array:
    h = _bias(_dot(nn.relu(h), self.k1), self.p1)
    return _bias(_dot(nn.relu(h), self.k2), self.p2).astype(jnp.float32)


def _draw(model, out: jax.Array, ch, key: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The naive sampler's draw at channel `ch` from the head's output [B, C * V]:
  (value float32 [B] in [-1, 1], logits: [B, V] categorical or [B] Bernoulli)."""
  b = out.shape[0]
  if model.num_values == 1:
    logit = out[:, 0]
    return 2.0 * jax.random.bernoulli(key, jax.nn.sigmoid(logit)) - 1.0, logit
  logits = jax.lax.dynamic_index_in_dim(out.reshape(b, model.channels, model.num_values), ch, 1,
                                        keepdims=False)
  k = jax.random.categorical(key, logits.astype(jnp.float32))
  return jnp.clip(k.astype(jnp.float32) / 127.5 - 1.0, -1.0, 1.0), logits


def _logits_buffer(model, num: int, h: int, w: int) -> jax.Array:
  if model.num_values == 1:
    return jnp.zeros((num, h, w, 1), jnp.float32)
  return jnp.zeros((num, h, w, model.channels, model.num_values), jnp.float32)


def _keep(logits_buf: Optional[jax.Array], logits: jax.Array, row, col, ch) -> Optional[jax.Array]:
  if logits_buf is None:
    return None
  if logits.ndim == 1:                                       # Bernoulli [B]
    return logits_buf.at[:, row, col, 0].set(logits)
  return logits_buf.at[:, row, col, ch].set(logits)


# ---- PixelCNN -----------------------------------------------------------------------------------
def _pixelcnn(model: PixelCNN, params, rng, num: int, h: int, w: int, ctx, keep_logits: bool,
              show: bool):
  c, dt, hid = model.channels, model.dtype, model.hidden
  kin = params["conv_in"]["kernel"].shape[0]
  pin = kin // 2                                             # 3 for the 7x7 conv
  k_in = _masked(params["conv_in"], "A", c, dt, rows=pin + 1)
  cond_bias = _ctx_bias(model, params, "cond_proj", ctx)
  blocks = []
  for b in range(model.num_blocks):
    pb = [params[f"block_{b}_conv_{j}"] for j in (1, 2, 3)]
    k3 = pb[1]["kernel"].shape[0]
    blocks.append((pb, _masked(pb[0], "B", c, dt), _masked(pb[1], "B", c, dt, rows=k3 // 2 + 1),
                   _masked(pb[2], "B", c, dt), k3))
  head = _Head(params, c, dt)
  total = h * w * c

  canvas = jnp.zeros((num, h + pin, w + 2 * pin, c), jnp.float32)  # pad top, left, right
  caches = [jnp.zeros((num, h + k3 // 2, w + 2 * (k3 // 2), hid), dt) for *_, k3 in blocks]
  logits_buf = _logits_buffer(model, num, h, w) if keep_logits else None

  def body(i, carry):
    canvas, caches, logits_buf = carry
    pixel, ch = jnp.divmod(i, c)
    row, col = jnp.divmod(pixel, w)
    x = _bias(_dot(_window(canvas, row, col, pin + 1, kin).astype(dt), k_in), params["conv_in"])
    if cond_bias is not None:
      x = x + cond_bias
    new_caches = []
    for (pb, k1, k2, k3m, k3), cache in zip(blocks, caches):
      p = k3 // 2
      r = nn.relu(_bias(_dot(nn.relu(x), k1), pb[0]))
      cache = _write(cache, r, row + p, col + p)
      r = _bias(_dot(_window(cache, row, col, p + 1, k3), k2), pb[1])
      x = x + _bias(_dot(nn.relu(r), k3m), pb[2])
      new_caches.append(cache)
    value, logits = _draw(model, head(x), ch, jax.random.fold_in(rng, i))
    canvas = jax.lax.dynamic_update_slice(canvas, value[:, None, None, None],
                                          (0, row + pin, col + pin, ch))
    if show:
      progress.in_loop(i, total, "pixelcnn cached sampling")
    return canvas, new_caches, _keep(logits_buf, logits, row, col, ch)

  canvas, _, logits_buf = jax.lax.fori_loop(0, total, body, (canvas, caches, logits_buf))
  return canvas[:, pin:, pin:pin + w], logits_buf


# ---- GatedPixelCNN ------------------------------------------------------------------------------
def _gate(x: jax.Array) -> jax.Array:
  f, g = jnp.split(x, 2, axis=-1)
  return jnp.tanh(f) * jax.nn.sigmoid(g)


def _gated(model: GatedPixelCNN, params, rng, num: int, h: int, w: int, ctx, keep_logits: bool,
           show: bool):
  c, dt, hid = model.channels, model.dtype, model.hidden
  n = model.num_layers
  ks = [model.first_kernel_size if l == 0 else model.kernel_size for l in range(n)]
  layers = []
  for l, k in enumerate(ks):
    pre = f"layer_{l}_"
    layers.append(dict(
        k=k,
        vert=params[pre + "vertical"],
        vert_k=params[pre + "vertical"]["kernel"].astype(dt),
        hor=params[pre + "horizontal"],
        hor_k=_masked(params[pre + "horizontal"], "A" if l == 0 else "B", c, dt, centre=(0, k // 2),
                      out_blocks=2),
        link=params[pre + "link"],
        link_k=params[pre + "link"]["kernel"].reshape(2 * hid, 2 * hid).astype(dt),
        res=params[pre + "residual"],
        res_k=_masked(params[pre + "residual"], "B", c, dt),
        vcond=_ctx_bias(model, params, pre + "vertical_cond", ctx),
        hcond=_ctx_bias(model, params, pre + "horizontal_cond", ctx)))
  head = _Head(params, c, dt)
  per_row = w * c
  total = h * per_row
  p0 = ks[0] // 2

  # vcaches[l]: the input of layer l's vertical conv over the image (l = 0: the image canvas, which
  # layer 0's horizontal conv reads too), padded k//2 on top, left and right.
  vcaches = [jnp.zeros((num, h + p0, w + 2 * p0, c), jnp.float32)]
  vcaches += [jnp.zeros((num, h + k // 2, w + 2 * (k // 2), hid), dt) for k in ks[1:]]
  # hbufs[l - 1]: layer l's horizontal input h along the current row, padded k//2 on the left.
  hbufs = [jnp.zeros((num, 1, w + k // 2, hid), dt) for k in ks[1:]]
  # links[l]: layer l's link 1x1 conv of the vertical stack's previous row, [B, W, 2p]; row 0 gets
  # the link of the down-shift's zero row, i.e. its bias.
  links = [jnp.broadcast_to(lay["link"]["bias"].astype(dt), (num, w, 2 * hid)) for lay in layers]
  logits_buf = _logits_buffer(model, num, h, w) if keep_logits else None

  def pixel_step(j, carry, row):
    vcaches, hbufs, links, logits_buf = carry
    i = row * per_row + j
    col, ch = jnp.divmod(j, c)
    x = None
    new_hbufs = []
    for l, lay in enumerate(layers):
      k = lay["k"]
      if l == 0:
        win = _window(vcaches[0], row + p0, col + p0 - k // 2, 1, k // 2 + 1).astype(dt)
      else:
        buf = _write(hbufs[l - 1], x, 0, col + k // 2)
        new_hbufs.append(buf)
        win = _window(buf, 0, col, 1, k // 2 + 1)
      h_pre = _bias(_dot(win, lay["hor_k"]), lay["hor"])
      h_pre = h_pre + jax.lax.dynamic_index_in_dim(links[l], col, 1, keepdims=False)
      if lay["hcond"] is not None:
        h_pre = h_pre + lay["hcond"]
      r = _bias(_dot(_gate(h_pre), lay["res_k"]), lay["res"])
      x = r if l == 0 else x + r
    value, logits = _draw(model, head(x), ch, jax.random.fold_in(rng, i))
    canvas = jax.lax.dynamic_update_slice(vcaches[0], value[:, None, None, None],
                                          (0, row + p0, col + p0, ch))
    if show:
      progress.in_loop(i, total, "gated_pixelcnn cached sampling")
    return [canvas] + vcaches[1:], new_hbufs, links, _keep(logits_buf, logits, row, col, ch)

  def row_step(row, carry):
    vcaches, hbufs, links, logits_buf = jax.lax.fori_loop(
        0, per_row, lambda j, cr: pixel_step(j, cr, row), carry)
    # The image row is complete: the vertical stack's row `row`, layer by layer, and its links.
    new_v, new_links = [vcaches[0]], []
    for l, lay in enumerate(layers):
      k = lay["k"]
      src = new_v[l]                      # layer l - 1 just wrote this row
      win = jax.lax.dynamic_slice(src, (0, row, 0, 0), (num, k // 2 + 1) + src.shape[2:])
      v_pre = jax.lax.conv_general_dilated(win.astype(dt), lay["vert_k"], (1, 1), "VALID",
                                           dimension_numbers=("NHWC", "HWIO", "NHWC"))[:, 0]
      v_pre = _bias(v_pre, lay["vert"])                                  # [B, W, 2p]
      new_links.append(_bias(_dot(v_pre, lay["link_k"]), lay["link"]))
      if l + 1 < n:
        if lay["vcond"] is not None:
          v_pre = v_pre + lay["vcond"][:, None, :]
        kn = ks[l + 1] // 2
        nxt = vcaches[l + 1]
        new_v.append(jax.lax.dynamic_update_slice(nxt, _gate(v_pre)[:, None].astype(nxt.dtype),
                                                  (0, row + kn, kn, 0)))
    return new_v, hbufs, new_links, logits_buf

  vcaches, _, _, logits_buf = jax.lax.fori_loop(0, h, row_step, (vcaches, hbufs, links, logits_buf))
  return vcaches[0][:, p0:, p0:p0 + w], logits_buf


# ---- entry points -------------------------------------------------------------------------------
def sample_with_logits(model: nn.Module, params, rng: jax.Array, num: int,
                       image_size: tuple[int, int], labels: Optional[jax.Array] = None,
                       cond: Optional[jax.Array] = None, *, keep_logits: bool = True,
                       show_progress: bool = False) -> tuple[jax.Array, Optional[jax.Array]]:
  """`sample`, and (keep_logits) the logits each position was drawn from: float32
  [num, H, W, C, V] (categorical) or [num, H, W, 1] (Bernoulli), else None."""
  if not supports(model):
    raise ValueError(f"pixelcnn_cache: no cached sampler for {type(model).__name__}; use PixelCNN "
                     "or GatedPixelCNN, or the naive sampler (config.sample.cached=False).")
  h, w = image_size
  if labels is not None and not model.num_classes:
    raise ValueError("pixelcnn_cache: labels were given to an unconditional model (num_classes=0).")
  if model.num_classes and labels is None:
    raise ValueError(f"pixelcnn_cache: num_classes={model.num_classes} needs int labels [num].")
  ctx = _conditioning(labels, cond, model.num_classes, model.dtype)
  show = progress.wanted(show_progress, h * w * model.channels)
  run = _pixelcnn if isinstance(model, PixelCNN) else _gated
  return run(model, params, rng, num, h, w, ctx, keep_logits, show)


def sample(model: nn.Module, params, rng: jax.Array, num: int, image_size: tuple[int, int],
           labels: Optional[jax.Array] = None, cond: Optional[jax.Array] = None, *,
           show_progress: bool = False) -> jax.Array:
  """`num` images float32 [num, H, W, C] in [-1, 1] (binary models: -1 / +1) from `model`
  (PixelCNN or GatedPixelCNN) with its Flax `params` (the "params" collection), drawn position by
  position in raster order (channels R -> G -> B) with the naive sampler's keys: equal to its
  images for the same `rng`. labels int [num] / cond float [num, D] for conditional models."""
  return sample_with_logits(model, params, rng, num, image_size, labels, cond, keep_logits=False,
                            show_progress=show_progress)[0]

