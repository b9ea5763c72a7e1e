"""Tests of PixelRNN's Row LSTM and Diagonal BiLSTM models: causality over pixels and colours by
exact zero gradients and bit-exact perturbations, receptive fields (triangular vs. full, the
mask-A blind spot), the skew/unskew helpers, and the right-to-left shift that keeps the Diagonal
BiLSTM causal."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.models import pixelrnn
from jaxgen.models.pixelrnn import LAYER_TYPES, PixelRNN, skew, unskew

HEADS = [(1, 1), (3, 256)]      # (channels, num_values): binary sigmoid, RGB 256-way softmax
CONFIGS = [(t, c, v) for t in LAYER_TYPES for c, v in HEADS]
SIDE = 6


def _model(layer_type, channels, num_values, **kw):
  return PixelRNN(channels=channels, hidden=kw.pop("hidden", 6), num_layers=2,
                  layer_type=layer_type, num_values=num_values, **kw)


def _image(shape, seed=0):
  return jax.random.uniform(jax.random.key(seed), shape, minval=-1.0, maxval=1.0)


def _params(module, x, **kw):
  """Random params of the right shapes (from eval_shape: tracing only). Compiling the module's
  own init costs ~3 s a model on these CPUs and the properties tested hold for any weights; the
  biases are nonzero too, so the constants they leave in the skewed padding are exercised."""
  shapes = jax.eval_shape(lambda x: module.init(jax.random.key(0), x, **kw), x)
  rng = np.random.default_rng(1)
  return jax.tree.map(
      lambda s: (rng.standard_normal(s.shape) / np.sqrt(np.prod(s.shape[:-1]))).astype(s.dtype)
      if len(s.shape) > 1 else 0.1 * rng.standard_normal(s.shape).astype(s.dtype), shapes)


def _dependencies(model, height, width, batch=3):
  """max over a batch of images of |d out[r, c, k] / d x[r', c', k']|, float64 [H, W, C, H, W, C]
  (the 256 logits of a channel projected on a fixed random vector, so any dependency shows).
  Several images, because a ReLU that is off for one image can hide a dependency that exists."""
  x = _image((batch, height, width, model.channels))
  params = _params(model, x, train=False)
  proj = np.asarray(jax.random.normal(jax.random.key(2), (model.num_values,)))

  def f(x):
    out = model.apply(params, x, train=False)
    out = out if model.num_values == 1 else out @ proj        # [B, H, W, C]
    return out.sum(0)     # images are independent: d out_b / d x_b' = 0 for b != b'

  jac = np.abs(np.asarray(jax.jit(jax.jacrev(f))(x), np.float64))   # [H, W, C, B, H, W, C]
  return jac.max(axis=3)


def _forbidden(height, width, channels):
  """bool [H, W, C, H, W, C]: input (p', k') is not allowed to reach output (p, k): p' later than
  p in raster order, or p' = p and k' >= k."""
  p = np.arange(height * width).reshape(height, width)[:, :, None, None, None, None]
  q = np.arange(height * width).reshape(height, width)[None, None, None, :, :, None]
  k = np.arange(channels)[None, None, :, None, None, None]
  kq = np.arange(channels)[None, None, None, None, None, :]
  return (q > p) | ((q == p) & (kq >= k))


def _assert_causal(dep):
  h, w, c = dep.shape[:3]
  leaks = np.argwhere(_forbidden(h, w, c) & (dep != 0))
  assert leaks.size == 0, f"{len(leaks)} leaks, e.g. out {leaks[0][:3]} <- in {leaks[0][3:]}"


@pytest.fixture(scope="module")
def deps():
  return {cfg: _dependencies(_model(*cfg), SIDE, SIDE) for cfg in CONFIGS}


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c[0]}-C{c[1]}-V{c[2]}")
def test_causal_by_exact_zero_gradients(deps, cfg):
  dep = deps[cfg]
  _assert_causal(dep)
  h, w, c = dep.shape[:3]
  for r in range(h):
    for col in range(w):
      for k in range(c):
        if r or col:       # some earlier pixel reaches it (the one before it always does)
          earlier = dep[r, col, k].reshape(h * w, c)[:r * w + col]
          assert earlier.any(), (r, col, k)
        for k_in in range(k):    # every earlier colour of the same pixel reaches it
          assert dep[r, col, k, r, col, k_in] > 0, (r, col, k, k_in)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c[0]}-C{c[1]}-V{c[2]}")
def test_later_pixels_leave_output_bit_identical(cfg):
  model = _model(*cfg)
  channels = cfg[1]
  x = np.asarray(_image((2, SIDE, SIDE, channels)))
  params = _params(model, x, train=False)
  apply = jax.jit(lambda x: model.apply(params, x, train=False))
  ref = np.asarray(apply(x))
  noise = np.asarray(_image(x.shape, seed=3))
  positions = [(0, 0, 0), (2, 3, channels - 1), (SIDE - 1, 0, channels // 2),
               (SIDE - 1, SIDE - 1, channels - 1), (3, SIDE - 1, 0)]
  for r, col, k in positions:
    p = r * SIDE + col
    later = np.arange(SIDE * SIDE).reshape(SIDE, SIDE, 1) > p
    mask = np.broadcast_to(later, x.shape[1:]).copy()
    mask[r, col, k:] = True                               # this pixel's own and later colours
    out = np.asarray(apply(np.where(mask, noise, x)))
    assert np.array_equal(out[:, r, col, k], ref[:, r, col, k]), (r, col, k)
    if p or k:     # control: changing what it may see does change it
      out = np.asarray(apply(np.where(mask, x, noise)))
      assert not np.array_equal(out[:, r, col, k], ref[:, r, col, k]), (r, col, k)


def _layer_dependencies(layer, height, width, c_in, batch=3):
  """As `_dependencies` for a recurrent layer alone: [H, W, hidden, H, W, C_in]."""
  x = _image((batch, height, width, c_in))
  params = _params(layer, x)
  jac = jax.jit(jax.jacrev(lambda x: layer.apply(params, x).sum(0)))(x)
  return np.abs(np.asarray(jac, np.float64)).max(axis=3)


def _own_pixel_ok(dep, colors):
  """At its own pixel, output group g depends on exactly the input groups <= g (mask B)."""
  h, w, c_out, _, _, c_in = dep.shape
  g_out, g_in = pixelrnn._groups(c_out, colors), pixelrnn._groups(c_in, colors)
  expected = g_in[None, :] <= g_out[:, None]
  for r in range(h):
    for col in range(w):
      np.testing.assert_array_equal(dep[r, col, :, r, col] > 0, expected, err_msg=str((r, col)))


def test_row_lstm_layer_receptive_field_is_a_triangle():
  # Input-to-state sees (r, c - 1) and (r, c); the 3-wide state-to-state conv adds one column per
  # row above on each side: row r - d (d >= 1) is seen on columns c - d - 1 .. c + d.
  height, width = 4, 7
  dep = _layer_dependencies(pixelrnn.RowLSTM(hidden=6, colors=3), height, width, c_in=6)
  _own_pixel_ok(dep, colors=3)
  seen = dep.max(axis=(2, 5)) > 0                                       # [H, W, H, W]
  for r in range(height):
    for col in range(width):
      expected = np.zeros((height, width), bool)
      for d in range(1, r + 1):
        expected[r - d, max(0, col - d - 1):col + d + 1] = True
      expected[r, max(0, col - 1):col + 1] = True
      np.testing.assert_array_equal(seen[r, col], expected, err_msg=str((r, col)))


def test_diagonal_bilstm_layer_sees_every_earlier_pixel():
  height, width = 4, 6
  dep = _layer_dependencies(pixelrnn.DiagonalBiLSTM(hidden=6, colors=3), height, width, c_in=6)
  _own_pixel_ok(dep, colors=3)
  raster = np.arange(height * width)
  seen = dep.max(axis=(2, 5)).reshape(height * width, height * width) > 0
  np.testing.assert_array_equal(seen, raster[None, :] <= raster[:, None])


def _sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def _cell(gates, c_prev):
  """The paper's Eq. 3 in numpy: gates [4h] = [o, f, i, g] pre-activations."""
  o, f, i, g = np.split(gates, 4)
  c = _sigmoid(f) * c_prev + _sigmoid(i) * np.tanh(g)
  return _sigmoid(o) * np.tanh(c), c


def _masked_kernel(kernel, mask_type, colors, out_blocks):
  kh, kw, c_in, c_out = kernel.shape
  mask = pixelrnn._color_mask((kh, kw), pixelrnn._groups(c_in, colors),
                              pixelrnn._groups(c_out // out_blocks, colors, out_blocks), mask_type)
  return kernel * mask


def _row_lstm_reference(params, x, colors=3):
  """Row LSTM pixel by pixel in float64: gates(r, c) = input-to-state (1x3, mask B) at (r, c) +
  sum_j h(r - 1, c - 1 + j) K_j; the cell state comes from (r - 1, c), the pixel above."""
  b, height, width, _ = x.shape
  kin = _masked_kernel(np.asarray(params["input_to_state"]["kernel"], np.float64), "B", colors, 4)
  bias = np.asarray(params["input_to_state"]["bias"], np.float64)
  kss = np.asarray(params["state_to_state"], np.float64)               # [3, h, 4h]
  hid = kss.shape[1]
  xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 0)))
  hs = np.zeros((b, height + 1, width + 2, hid))                       # row 0 / cols 0, W+1: zeros
  cs = np.zeros((b, height + 1, width, hid))
  for n in range(b):
    for r in range(height):
      for c in range(width):
        g = bias + sum(xp[n, r, c + j] @ kin[0, j] for j in range(3))
        g = g + sum(hs[n, r, c + j] @ kss[j] for j in range(3))
        hs[n, r + 1, c + 1], cs[n, r + 1, c] = _cell(g, cs[n, r, c])
  return hs[:, 1:, 1:-1]


def _diagonal_lstm_reference(kin, bias, kss, x):
  """One diagonal LSTM direction pixel by pixel in float64: gates(r, c) = 1x1 input-to-state +
  h(r - 1, c) K_0 + h(r, c - 1) K_1; the cell state comes from (r, c - 1), the pixel to the left
  (the previous column of the skewed map, same row)."""
  b, height, width, _ = x.shape
  hid = kss.shape[1]
  hs = np.zeros((b, height + 1, width + 1, hid))
  cs = np.zeros((b, height, width + 1, hid))
  for n in range(b):
    for c in range(width):          # any order in which above and left come first
      for r in range(height):
        g = bias + x[n, r, c] @ kin + hs[n, r, c + 1] @ kss[0] + hs[n, r + 1, c] @ kss[1]
        hs[n, r + 1, c + 1], cs[n, r, c + 1] = _cell(g, cs[n, r, c])
  return hs[:, 1:, 1:]


def test_lstm_layers_equal_a_pixel_by_pixel_reference():
  # The recurrences' values (not only their dependencies) against float64 loops over pixels,
  # written from the paper's equations: catches a wrong tap, gate order, cell-state neighbour or
  # direction kernel, which the causality tests cannot see.
  height, width, hid, colors = 4, 5, 6, 3
  x = np.asarray(_image((2, height, width, 6), seed=3))
  row = pixelrnn.RowLSTM(hidden=hid, colors=colors)
  params = _params(row, jnp.asarray(x))["params"]
  out = np.asarray(jax.jit(row.apply)({"params": params}, x), np.float64)
  np.testing.assert_allclose(out, _row_lstm_reference(params, np.float64(x), colors),
                             atol=1e-5, rtol=1e-5)

  diag = pixelrnn.DiagonalBiLSTM(hidden=hid, colors=colors)
  params = _params(diag, jnp.asarray(x))["params"]
  out = np.asarray(jax.jit(diag.apply)({"params": params}, x), np.float64)
  kin = _masked_kernel(np.asarray(params["input_to_state"]["kernel"], np.float64), "B", colors, 8)
  bias = np.asarray(params["input_to_state"]["bias"], np.float64)
  kss = np.asarray(params["state_to_state"], np.float64)               # [2 dirs, 2 taps, h, 4h]
  lr = _diagonal_lstm_reference(kin[0, 0, :, :4 * hid], bias[:4 * hid], kss[0], np.float64(x))
  rl = _diagonal_lstm_reference(kin[0, 0, :, 4 * hid:], bias[4 * hid:], kss[1],
                                np.float64(x[:, :, ::-1]))[:, :, ::-1]
  # The right-to-left direction enters one row down (row 0 gets none of it).
  expected = lr + np.pad(rl, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :-1]
  np.testing.assert_allclose(out, expected, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def wide_deps():
  """4 x 10 binary images: wide enough for the Row LSTM's triangle to end inside the image."""
  return {t: _dependencies(_model(t, 1, 1), 4, 10) for t in LAYER_TYPES}


@pytest.mark.parametrize("r,col", [(3, 0), (3, 9), (2, 5)])
def test_row_lstm_model_receptive_field_is_a_triangle(wide_deps, r, col):
  # 2 layers: the 7x7 mask-A conv reaches 3 columns either way in the rows above and 3 to the left
  # in its own row; each Row LSTM layer adds one column per row above on either side and one to
  # the left in the own row. So row r' < r is seen on columns [col - 5 - (r - r'),
  # col + 2 + (r - r')] and the own row on [col - 5, col - 1].
  seen = wide_deps["row_lstm"][r, col, 0, :, :, 0] > 0
  expected = np.zeros((4, 10), bool)
  for rr in range(r):
    expected[rr, max(0, col - 5 - (r - rr)):col + 3 + (r - rr)] = True
  expected[r, max(0, col - 5):col] = True
  np.testing.assert_array_equal(seen, expected)
  if (r, col) == (3, 0):    # earlier pixels of the first row outside the field
    assert not seen[0, 6:].any() and seen[0, :6].all()


def _diagonal_model_field(height, width, channels):
  """What the Diagonal BiLSTM model sees, bool [H, W, C, H, W, C]: every earlier pixel and colour,
  except one blind spot of the 7x7 mask-A input conv: the last colour of a row's last pixel
  (r, W - 1) enters no feature at or before (r, W - 1) (mask A drops its own colour there), and
  in row r + 1 only at columns >= W - 4 (the conv's reach), so outputs (r + 1, c < W - 4) miss it.
  The recurrent layers themselves see every earlier pixel (test above)."""
  field = ~_forbidden(height, width, channels)
  for r in range(height - 1):
    field[r + 1, :width - 4, :, r, width - 1, channels - 1] = False
  return field


@pytest.mark.parametrize("channels,num_values", HEADS)
def test_diagonal_bilstm_model_sees_every_earlier_pixel(deps, wide_deps, channels, num_values):
  dep = deps[("diagonal_bilstm", channels, num_values)]
  np.testing.assert_array_equal(dep > 0, _diagonal_model_field(SIDE, SIDE, channels))
  if channels == 1:
    np.testing.assert_array_equal(wide_deps["diagonal_bilstm"] > 0, _diagonal_model_field(4, 10, 1))


def test_without_the_shift_the_right_to_left_direction_leaks(monkeypatch):
  monkeypatch.setattr(pixelrnn, "_combine_directions",
                      functools.partial(pixelrnn._combine_directions, shift=False))
  height, width = 4, 6
  dep = _dependencies(_model("diagonal_bilstm", 1, 1), height, width)
  # What leaks into (r, c) is its own row from c on, exactly what the shift removes (up to the
  # row's last pixel, which the mask-A input conv hides from the whole row).
  expected = np.zeros(dep.shape, bool)
  for r in range(height):
    for col in range(width):
      expected[r, col, 0, r, col:width - 1, 0] = True
  np.testing.assert_array_equal(_forbidden(height, width, 1) & (dep > 0), expected)
  # (With the shift, the same model is causal: test_causal_by_exact_zero_gradients.)


def test_skew_unskew_are_inverse():
  x = _image((2, 3, 5, 4))
  s = jax.jit(skew)(x)
  assert s.shape == (2, 3, 7, 4)
  for r in range(3):
    np.testing.assert_array_equal(s[:, r, r:r + 5], x[:, r])        # row r moved right by r
    assert not np.asarray(s[:, r, :r]).any() and not np.asarray(s[:, r, r + 5:]).any()
  np.testing.assert_array_equal(jax.jit(unskew, static_argnums=1)(s, 5), x)
  # Pixel (r, c) at column r + c: an anti-diagonal of the image is a column of the skewed map.
  np.testing.assert_array_equal(s[0, :, 3, 0], [x[0, 0, 3, 0], x[0, 1, 2, 0], x[0, 2, 1, 0]])


def test_color_mask_centre_taps():
  groups = pixelrnn._groups(6, 3)
  assert groups.tolist() == [0, 0, 1, 1, 2, 2]
  # Each LSTM gate block is grouped like the state, so the elementwise cell mixes one group.
  assert pixelrnn._groups(3, 3, blocks=4).tolist() == [0, 1, 2] * 4
  a = pixelrnn._color_mask((3, 3), groups, groups, "A")
  b = pixelrnn._color_mask((3, 3), groups, groups, "B")
  np.testing.assert_array_equal(a[1, 1], groups[:, None] < groups[None, :])
  np.testing.assert_array_equal(b[1, 1], groups[:, None] <= groups[None, :])
  for m in (a, b):
    assert m[0].all() and m[1, 0].all() and not m[1, 2].any() and not m[2].any()


def test_output_layouts_dtypes_and_errors():
  x = jax.ShapeDtypeStruct((2, 5, 4, 3), jnp.float32)
  for layer_type in LAYER_TYPES:
    model = _model(layer_type, 3, 256, dtype=jnp.bfloat16)
    params = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=True), x)
    out = jax.eval_shape(lambda p, x: model.apply(p, x, train=True), params, x)
    assert out.shape == (2, 5, 4, 3, 256) and out.dtype == jnp.float32
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
  binary = jax.ShapeDtypeStruct((2, 5, 4, 1), jnp.float32)
  model = _model("diagonal_bilstm", 1, 1)
  params = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), binary)
  out = jax.eval_shape(lambda p, x: model.apply(p, x, train=False), params, binary)
  assert out.shape == (2, 5, 4, 1) and out.dtype == jnp.float32
  for bad, match in [(_model("row_lstm", 3, 1), "num_values=1"),
                     (_model("grid_lstm", 3, 256), "layer_type"),
                     (_model("row_lstm", 3, 256, hidden=2), "hidden=2"),
                     (_model("row_lstm", 1, 256), r"\[B, H, W, 1\]")]:
    with pytest.raises(ValueError, match=match):
      jax.eval_shape(lambda x: bad.init(jax.random.key(0), x, train=False), x)
