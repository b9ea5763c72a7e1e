"""Cached ("fast") sampling of the convolutional models: `PixelCNN`, `GatedPixelCNN`, `PixelCNNpp`.

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

- PixelCNNpp. Sampled one pixel at a time (the mixture draws the three colours jointly), so a
  layer's output at (i, j) is final once every pixel before (i, j) is: the u stream (down-shifted
  convs) at row i sees only rows < i, the ul stream at (i, j) only earlier pixels, and a cell (I, J)
  of the half / quarter resolution only fine pixels before (2I, 2J) / (4I, 4J) (the stride-2 shifted
  convs read cells above and to the left, the transposed ones send a coarse cell to the 2 x 2 block
  below-right of it). So, with every layer's output cached over its resolution, the u stream's
  layers run once per row (at rows 2I / 4I for the coarser ones) on a band of the rows above, and the
  ul stream's once per pixel (at (2I, 2J) / (4I, 4J) for the coarser ones, under lax.cond) on a
  window reaching as far up and left as the layer does (3 x 3 for a gated block), in the model's
  layer order; the window is clipped into the image, where the layer's own zero padding is the
  image's. Each layer is the model's own Flax module applied to its params subtree (weight-normalised
  kernels g v / |v| converted once), so the cached sampler cannot drift from the model. Cost: about
  one full forward pass of the u stream, and per pixel a 3 x 3 window of each ul layer, instead of
  the whole network over H W pixels at each of the H W steps.

Cost per position (PixelCNN, Gated PixelCNN): one column of layers at one pixel (plus, once per row, one row of the vertical
stack) instead of the full network over H W pixels. Everything runs in one compiled loop
(`lax.fori_loop` over positions; rows then positions for the Gated PixelCNN).

API: `supports(model)`, `sample(model, params, rng, num, image_size, labels=None, cond=None)` ->
float32 [num, H, W, C] in [-1, 1], and `sample_with_logits` (the same plus every position's logits,
for tests).
"""
from typing import Any, Callable, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen import distributions as D
from jaxgen import progress
from jaxgen.models.pixelcnn import (GatedPixelCNN, GatedResnet, PixelCNN, PixelCNNpp,
                                    _conditioning)
from jaxgen.nn.linear import Conv, weight_norm_to_plain
from jaxgen.nn.masked import (DownRightShiftedConv, DownRightShiftedConvTranspose, DownShiftedConv,
                              DownShiftedConvTranspose, causal_mask, down_shift, right_shift)


def supports(model: nn.Module) -> bool:
  """Whether `model` has a cached sampler here (PixelCNN, GatedPixelCNN, PixelCNNpp)."""
  return isinstance(model, (PixelCNN, GatedPixelCNN, PixelCNNpp))


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


# ---- PixelCNN++ ---------------------------------------------------------------------------------
class _Node(NamedTuple):
  """One layer of PixelCNN++ as the cached sampler runs it: writes cache `out` at resolution
  `level` (0 = full, 1 = half, 2 = quarter) from the caches `ins`, when the grid of level `fire`
  reaches a new row ("u" stream, at row starts) or a new pixel ("ul" stream). `kind`: "in" (the input
  layers, on the image), "res" (a gated block), "down" (stride-2 conv from level - 1), "up" (stride-2
  transposed conv from level + 1 = fire)."""
  out: str
  level: int
  fire: int
  stream: str
  kind: str
  fn: Callable[..., jax.Array]
  ins: tuple[str, ...]


# Receptive reach (rows above, columns left, columns right) of one output of each kind, in units of
# its own resolution ("down": in coarse cells, each 2 x 2 of the input).
_REACH = {"in_u": (2, 0, 0), "in_ul": (1, 1, 1), "res_u": (2, 0, 0), "res_ul": (2, 2, 0),
          "down_u": (1, 0, 0), "down_ul": (1, 1, 0)}


def _pp_graph(model: PixelCNNpp, params, ctx) -> tuple[list[_Node], str]:
  """PixelCNNpp.__call__ as a list of nodes in its order (train=False), and the key of the last ul
  cache (the head's input). Every module is the model's own, applied to its params subtree."""
  nf, dt = model.nr_filters, model.dtype

  def conv(cls, name, **kw):
    m = cls(nf, dtype=dt, **kw)
    return lambda x: m.apply({"params": params[name]}, x)

  def res(shift, name):
    m = GatedResnet(shift, 0.0, dt)

    def fn(x, *skips):
      skip = None if not skips else skips[0] if len(skips) == 1 else jnp.concatenate(skips, -1)
      return m.apply({"params": params[name]}, x, skip, ctx, train=False)
    return fn

  nodes = []

  def add(out, level, stream, kind, fn, *ins, fire=None):
    nodes.append(_Node(out, level, level if fire is None else fire, stream, kind, fn, ins))
    return out

  u_in = conv(DownShiftedConv, "u_in", kernel_size=(2, 3))
  ul_above = conv(DownShiftedConv, "ul_in_above", kernel_size=(1, 3))
  ul_left = conv(DownRightShiftedConv, "ul_in_left", kernel_size=(2, 1))
  u = [add("u_in", 0, "u", "in", lambda x: down_shift(u_in(x)), "x")]
  ul = [add("ul_in", 0, "ul", "in", lambda x: down_shift(ul_above(x)) + right_shift(ul_left(x)),
            "x")]
  for level in range(3):
    if level:
      name = f"up_{level}_u_down"
      u.append(add(name, level, "u", "down", conv(DownShiftedConv, name, strides=2), u[-1]))
      name = f"up_{level}_ul_down"
      ul.append(add(name, level, "ul", "down", conv(DownRightShiftedConv, name, strides=2), ul[-1]))
    for j in range(model.nr_resnet):
      name = f"up_{level}_u_res_{j}"
      u.append(add(name, level, "u", "res", res("down", name), u[-1]))
      name = f"up_{level}_ul_res_{j}"
      ul.append(add(name, level, "ul", "res", res("down_right", name), ul[-1], u[-1]))
  uk, ulk = u.pop(), ul.pop()
  for level in reversed(range(3)):
    for j in range(model.nr_resnet + (level < 2)):
      name = f"down_{level}_u_res_{j}"
      uk = add(name, level, "u", "res", res("down", name), uk, u.pop())
      name = f"down_{level}_ul_res_{j}"
      ulk = add(name, level, "ul", "res", res("down_right", name), ulk, uk, ul.pop())
    if level:
      name = f"down_{level}_u_up"
      uk = add(name, level - 1, "u", "up", conv(DownShiftedConvTranspose, name), uk, fire=level)
      name = f"down_{level}_ul_up"
      ulk = add(name, level - 1, "ul", "up", conv(DownRightShiftedConvTranspose, name), ulk,
                fire=level)
  assert not u and not ul, "every short cut is used once"
  return nodes, ulk


def _span(pos, lo: int, hi: int, size: int):
  """(start, n): a window of n = lo + hi + 1 cells (at most `size`) around pos, clipped into the
  image. A causal layer applied to the window gives, at pos - start, its output on the whole image:
  the receptive field lies inside the window, or reaches the image border where the window's own
  zero padding is the layer's."""
  n = min(lo + hi + 1, size)
  return jnp.clip(pos - lo, 0, size - n), n


def _run_node(node: _Node, caches: dict, r, c) -> dict:
  """Computes node's output at its fire grid's row r ("u": the whole row) or cell (r, c) ("ul") from
  windows of its input caches, and writes it into caches[node.out]."""
  ins = [caches[k] for k in node.ins]
  out = caches[node.out]
  b = out.shape[0]
  if node.kind == "up":               # one coarse row / cell -> 2 rows / a 2 x 2 block, no overlap
    if node.stream == "u":
      y = node.fn(*[jax.lax.dynamic_slice_in_dim(a, r, 1, 1) for a in ins])
      return {**caches, node.out: jax.lax.dynamic_update_slice_in_dim(out, y.astype(out.dtype),
                                                                        2 * r, 1)}
    y = node.fn(*[jax.lax.dynamic_slice(a, (0, r, c, 0), (b, 1, 1, a.shape[-1])) for a in ins])
    return {**caches, node.out: jax.lax.dynamic_update_slice(out, y.astype(out.dtype),
                                                             (0, 2 * r, 2 * c, 0))}
  up, left, right = _REACH[f"{node.kind}_{node.stream}"]
  f = 2 if node.kind == "down" else 1           # input cells per output cell
  h, w = out.shape[1:3]
  s, n = _span(r, up, 0, h)
  if node.stream == "u":
    y = node.fn(*[jax.lax.dynamic_slice_in_dim(a, f * s, f * n, 1) for a in ins])
    y = jax.lax.dynamic_slice_in_dim(y, r - s, 1, 1)
    return {**caches, node.out: jax.lax.dynamic_update_slice_in_dim(out, y.astype(out.dtype), r, 1)}
  t, m = _span(c, left, right, w)
  y = node.fn(*[jax.lax.dynamic_slice(a, (0, f * s, f * t, 0), (b, f * n, f * m, a.shape[-1]))
                for a in ins])
  y = jax.lax.dynamic_slice(y, (0, r - s, c - t, 0), (b, 1, 1, y.shape[-1]))
  return {**caches, node.out: jax.lax.dynamic_update_slice(out, y.astype(out.dtype), (0, r, c, 0))}


def _run_segments(nodes: list[_Node], caches: dict, r, c=None) -> dict:
  """Runs the nodes in order, each run of equal `fire` as one block, skipped (lax.cond) unless
  fine row r (and column c) fall on that level's grid."""
  segments = []
  for node in nodes:
    if segments and segments[-1][0] == node.fire:
      segments[-1][1].append(node)
    else:
      segments.append((node.fire, [node]))
  for fire, seg in segments:
    def go(caches, fire=fire, seg=seg):
      for node in seg:
        caches = _run_node(node, caches, r >> fire, None if c is None else c >> fire)
      return caches
    if fire == 0:
      caches = go(caches)
      continue
    on = (r & ((1 << fire) - 1)) == 0
    if c is not None:
      on = on & ((c & ((1 << fire) - 1)) == 0)
    caches = jax.lax.cond(on, go, lambda caches: caches, caches)
  return caches


def _pixelcnnpp(model: PixelCNNpp, params, rng, num: int, h: int, w: int, ctx, keep_logits: bool,
                show: bool):
  if h % 4 or w % 4:
    raise ValueError(f"pixelcnn_cache: PixelCNN++ image sides must be divisible by 4, got {h}x{w}.")
  if model.weight_norm:            # kernels g v / |v| once, not at each of the H W steps
    params = weight_norm_to_plain(params)
  dt, c = model.dtype, model.channels
  nodes, last = _pp_graph(model, params, ctx)
  per_mix = 10 if c == 3 else 3
  conv_out = Conv(per_mix * model.nr_logistic_mix, (1, 1), padding="VALID", dtype=dt)

  # Caches: the float32 canvas with the model's channel of ones (the first layers cast it to the
  # compute dtype, as the model does), then every layer's output over its whole resolution; shapes
  # and dtypes as the layers give them.
  x = jnp.concatenate([jnp.zeros((num, h, w, c)), jnp.ones((num, h, w, 1))], -1)
  caches = {"x": x}
  for node in nodes:
    shape = jax.eval_shape(node.fn, *[caches[k] for k in node.ins])
    caches[node.out] = jnp.zeros(shape.shape, shape.dtype)
  u_nodes = [n for n in nodes if n.stream == "u"]
  ul_nodes = [n for n in nodes if n.stream == "ul"]
  logits_buf = (jnp.zeros((num, h, w, per_mix * model.nr_logistic_mix), jnp.float32)
                if keep_logits else None)

  def pixel_step(col, carry, row):
    caches, logits_buf = carry
    caches = _run_segments(ul_nodes, caches, row, col)
    top = caches[last]
    v = jax.lax.dynamic_slice(top, (0, row, col, 0), (num, 1, 1, top.shape[-1]))
    out = conv_out.apply({"params": params["conv_out"]}, nn.elu(v)).astype(jnp.float32)[:, 0, 0]
    i = row * w + col
    value = D.sample_mix_logistic(jax.random.fold_in(rng, i), out, c)        # [num, C]
    x = jax.lax.dynamic_update_slice(caches["x"], value[:, None, None, :], (0, row, col, 0))
    if logits_buf is not None:
      logits_buf = logits_buf.at[:, row, col].set(out)
    if show:
      progress.in_loop(i, h * w, "pixelcnnpp cached sampling")
    return {**caches, "x": x}, logits_buf

  def row_step(row, carry):
    caches, logits_buf = carry
    caches = _run_segments(u_nodes, caches, row)
    return jax.lax.fori_loop(0, w, lambda col, cr: pixel_step(col, cr, row), (caches, logits_buf))

  caches, logits_buf = jax.lax.fori_loop(0, h, row_step, (caches, logits_buf))
  return caches["x"][..., :c], logits_buf


# ---- entry points -------------------------------------------------------------------------------
def sample_with_logits(model: nn.Module, params, rng: jax.Array, num: int,
                       image_size: tuple[int, int], labels: Optional[jax.Array] = None,
                       cond: Optional[jax.Array] = None, *, keep_logits: bool = True,
                       show_progress: bool = False) -> tuple[jax.Array, Optional[jax.Array]]:
  """`sample`, and (keep_logits) the logits each position was drawn from: float32
  [num, H, W, C, V] (categorical), [num, H, W, 1] (Bernoulli) or the mixture's parameters
  [num, H, W, 10 M] / [num, H, W, 3 M] (PixelCNNpp), else None."""
  if not supports(model):
    raise ValueError(f"pixelcnn_cache: no cached sampler for {type(model).__name__}; use PixelCNN, "
                     "GatedPixelCNN or PixelCNNpp, or the naive sampler (config.sample.cached=False).")
  h, w = image_size
  if labels is not None and not model.num_classes:
    raise ValueError("pixelcnn_cache: labels were given to an unconditional model (num_classes=0).")
  if model.num_classes and labels is None:
    raise ValueError(f"pixelcnn_cache: num_classes={model.num_classes} needs int labels [num].")
  ctx = _conditioning(labels, cond, model.num_classes, model.dtype)
  if isinstance(model, PixelCNNpp):
    return _pixelcnnpp(model, params, rng, num, h, w, ctx, keep_logits,
                       progress.wanted(show_progress, h * w))
  show = progress.wanted(show_progress, h * w * model.channels)
  run = _pixelcnn if isinstance(model, PixelCNN) else _gated
  return run(model, params, rng, num, h, w, ctx, keep_logits, show)


def sample(model: nn.Module, params, rng: jax.Array, num: int, image_size: tuple[int, int],
           labels: Optional[jax.Array] = None, cond: Optional[jax.Array] = None, *,
           show_progress: bool = False) -> jax.Array:
  """`num` images float32 [num, H, W, C] in [-1, 1] (binary models: -1 / +1) from `model`
  (PixelCNN, GatedPixelCNN or PixelCNNpp) with its Flax `params` (the "params" collection), drawn position by
  position in raster order (channels R -> G -> B) with the naive sampler's keys: equal to its
  images for the same `rng`. labels int [num] / cond float [num, D] for conditional models."""
  return sample_with_logits(model, params, rng, num, image_size, labels, cond, keep_logits=False,
                            show_progress=show_progress)[0]

