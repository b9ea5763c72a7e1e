"""PixelCNN family (jaxgen.models.pixelcnn, jaxgen.nn.masked): causality by exact zero gradients
and bit-exact perturbations for every model, the plain PixelCNN's blind spot that the Gated PixelCNN
does not have, the peer's parameter count, output layouts.
Small sizes (8x8 images, few channels)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.models.pixelcnn import GatedPixelCNN, PixelCNN, PixelCNNpp
from jaxgen.nn.linear import Conv
from jaxgen.nn.masked import (DownRightShiftedConvTranspose, DownShiftedConvTranspose, MaskedConv,
                              causal_mask)

SIDE, BATCH = 8, 3
NUM_CLASSES, COND_DIM = 4, 5
# Output positions (row, column, colour) whose dependencies are checked: a first pixel's later
# colour, pixels inside and at the edges, every colour.
POSITIONS = [(0, 0, 2), (2, 5, 0), (4, 3, 1), (5, 0, 2), (7, 7, 1)]

# name -> (model, per_channel, binary, conditioned). per_channel: output channel c of a pixel may
# see the pixel's channels < c; otherwise (PixelCNN++) no channel of the pixel at all.
MODELS = {
    "pixelcnn_rgb_softmax": (PixelCNN(channels=3, hidden=8, num_blocks=2), True, False, False),
    "pixelcnn_binary_sigmoid": (PixelCNN(channels=1, hidden=8, num_blocks=2, num_values=1), True,
                                True, False),
    "gated_rgb": (GatedPixelCNN(channels=3, hidden=6, num_layers=3), True, False, False),
    "gated_rgb_labels_cond": (GatedPixelCNN(channels=3, hidden=6, num_layers=3,
                                            num_classes=NUM_CLASSES), True, False, True),
    "pixelcnnpp_rgb": (PixelCNNpp(channels=3, nr_resnet=1, nr_filters=8, nr_logistic_mix=2), False,
                       False, False),
    # nr_resnet=0 keeps every layer kind but the up pass's blocks (which pixelcnnpp_rgb has).
    "pixelcnnpp_grey_labels_cond": (PixelCNNpp(channels=1, nr_resnet=0, nr_filters=8,
                                               nr_logistic_mix=2, num_classes=NUM_CLASSES), False,
                                    False, True),
}


def _images(key, channels, binary, batch=BATCH, side=SIDE):
  if binary:
    return jnp.where(jax.random.bernoulli(key, 0.5, (batch, side, side, channels)), 1.0, -1.0)
  return jax.random.uniform(key, (batch, side, side, channels), minval=-1.0, maxval=1.0)


def random_params(model, *args, **kwargs):
  """Params of model.init's shapes, drawn with numpy: causality is structural, so any values do
  (the masks act in the forward pass, so masked taps hold nonzero values too, a stronger test than
  the initialiser's), and skipping init's compile (~25 s for PixelCNN++ on 2 cores) keeps the file
  fast. Kernels get std 1 / sqrt(fan_in) so the activations stay O(1); biases are positive (0.2 to
  0.7) so that ReLUs are mostly on: a unit that is off at a pixel in every example would hide a
  dependency the checks expect to see."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), *args, **kwargs))
  rng = np.random.default_rng(0)

  def draw(s):
    if len(s.shape) == 1:
      return rng.uniform(0.2, 0.7, s.shape).astype(np.float32)
    return (rng.standard_normal(s.shape) * np.prod(s.shape[:-1]) ** -0.5).astype(np.float32)
  return jax.tree.map(draw, shapes)


class _Setup:
  """A model, its params, a batch, and ONE jitted function (one compile per model) that returns the
  outputs and the input gradients of <w, output at position p of example 0> for every position p
  (w a fixed random vector over the remaining output axes: softmax values or mixture channels)."""

  def __init__(self, name):
    self.model, self.per_channel, self.binary, conditioned = MODELS[name]
    c = self.model.channels
    self.positions = [(i, j, min(k, c - 1)) for i, j, k in POSITIONS]
    self.x = _images(jax.random.key(0), c, self.binary)
    self.labels = jnp.arange(BATCH, dtype=jnp.int32) % NUM_CLASSES if conditioned else None
    self.cond = jax.random.normal(jax.random.key(1), (BATCH, COND_DIM)) if conditioned else None
    self.variables = random_params(self.model, self.x, self.labels, self.cond, train=False)
    y = jax.eval_shape(lambda: self.model.apply(self.variables, self.x, self.labels, self.cond,
                                                train=False))
    self.cts = cotangents(y.shape, self.positions, self.per_channel)

    def run(x, labels, cond, key, cts):
      # train=True: the dropout masks come from `key`, not from x, so causality must hold with
      # dropout on, and equal keys give equal masks.
      f = lambda v: self.model.apply(self.variables, v, labels, cond, train=True,  # noqa: E731
                                     rngs={"dropout": key})
      y, vjp = jax.vjp(f, x)
      return y, jax.vmap(lambda ct: vjp(ct)[0])(cts)

    self._run = jax.jit(run)

  def __call__(self, x, labels=None, cond=None, key=3):
    """(outputs, gradients [P, B, H, W, C]) as numpy; labels / cond default to the setup's."""
    labels = self.labels if labels is None else labels
    cond = self.cond if cond is None else cond
    y, g = self._run(x, labels, cond, jax.random.key(key), self.cts)
    return np.asarray(y), np.asarray(g)


@pytest.fixture(scope="module", params=list(MODELS))
def setup(request):
  return _Setup(request.param)


def cotangents(shape, positions, per_channel):
  """[P + 1, *shape] output cotangents: row p is a fixed random vector w at position p of every
  example (over the remaining output axes: softmax values or mixture channels); the last row is the
  last position of example 0 alone, to see that examples do not mix. With vjp they give the input
  gradients of <w, output at p>, per example."""
  w = np.asarray(jax.random.normal(jax.random.key(4), shape))
  cts = np.zeros((len(positions) + 1, *shape), np.float32)
  for k, (i, j, c) in enumerate(positions + positions[-1:]):
    examples = slice(0, 1) if k == len(positions) else slice(None)
    idx = (examples, i, j) + ((c,) if per_channel else ())
    cts[(k, *idx)] = w[idx]
  return cts


def input_gradients(forward, x, positions, per_channel):
  """[P + 1, B, H, W, C]: the input gradients of forward(x) for `cotangents`."""
  y, vjp = jax.vjp(forward, x)
  cts = cotangents(y.shape, positions, per_channel)
  return np.asarray(jax.jit(jax.vmap(lambda ct: vjp(ct)[0]))(cts))


def causality_violations(grads, positions, per_channel):
  """Every way the gradients (of `cotangents`) break the autoregressive order, as readable strings
  (empty: causal). Zeros are required of every example; the expected dependencies (some earlier
  pixel, every earlier colour of the pixel) of at least one, since a ReLU can happen to be off at a
  pixel of one example."""
  out = []
  _, b, h, w, c_in = grads.shape
  raster = np.arange(h * w).reshape(h, w)
  grads = np.abs(grads)
  if grads[-1, 1:].any():
    out.append("outputs of example 0 depend on other examples of the batch")
  for g, (i, j, c) in zip(grads, positions):
    n = i * w + j
    where = f"output (row {i}, col {j}, colour {c})"
    if g[:, raster > n].any():
      out.append(f"{where} sees later pixels {np.argwhere(g.any((0, -1)) & (raster > n)).tolist()}")
    own = g[:, i, j, c:] if per_channel else g[:, i, j]
    if own.any():
      seen = np.flatnonzero(g[:, i, j].any(0)).tolist()
      out.append(f"{where} sees its own pixel's channels {seen}")
    if n > 0 and not g[:, raster < n].any():
      out.append(f"{where} sees no earlier pixel")
    if per_channel and c > 0 and c_in > 1 and not g[:, i, j, :c].any(0).all():
      out.append(f"{where} misses some of its pixel's earlier colours {g[:, i, j, :c].any(0)}")
  return out


def test_causal_by_exact_zero_gradients(setup):
  _, grads = setup(setup.x)
  assert causality_violations(grads, setup.positions, setup.per_channel) == []


def test_later_pixels_do_not_change_outputs_bit_for_bit(setup):
  """Example k of the batch gets position k's later pixels (and the pixel's not-yet-generated
  channels) replaced: the output there must be identical, bit for bit. Changing an earlier pixel
  (the one above; left of it on the first row), which every model sees, must change it (so the
  check is not vacuous)."""
  positions = setup.positions[1:1 + BATCH]   # positions with an earlier pixel
  x = np.asarray(setup.x)
  fresh = np.asarray(_images(jax.random.key(5), x.shape[-1], setup.binary))
  later, earlier = x.copy(), x.copy()
  raster = np.arange(SIDE * SIDE).reshape(SIDE, SIDE)
  for k, (i, j, c) in enumerate(positions):
    n = i * SIDE + j
    later[k][raster > n] = fresh[k][raster > n]
    first = c if setup.per_channel else 0
    later[k, i, j, first:] = fresh[k, i, j, first:]
    before = raster == (n - SIDE if i else n - 1)
    earlier[k][before] = -x[k][before] if setup.binary else fresh[k][before]
  # The same compiled program on inputs of the same shape: any difference is a dependence.
  y, y_later, y_earlier = (setup(v)[0] for v in (x, later, earlier))
  for k, (i, j, c) in enumerate(positions):
    idx = (k, i, j, c) if setup.per_channel else (k, i, j)
    np.testing.assert_array_equal(y_later[idx], y[idx], err_msg=f"position {(i, j, c)}")
    assert np.any(y_earlier[idx] != y[idx]), f"position {(i, j, c)} ignores the pixel above"


def test_the_checks_catch_leaks():
  """The checker itself fails on non-causal layers: a type-B masked conv as a whole model (colour c
  sees colour c of its pixel) and a plain 3x3 conv (sees pixels to the right and below)."""
  x = _images(jax.random.key(6), 3, False)
  for layer, expect in ((MaskedConv(3, 3, "B", colors=3), "own pixel"),
                        (Conv(3, (3, 3)), "later pixels"),
                        (MaskedConv(3, 3, "A", colors=3), None)):
    params = random_params(layer, x)
    grads = input_gradients(lambda v: layer.apply(params, v), x, POSITIONS, True)
    found = causality_violations(grads, POSITIONS, True)
    if expect is None:
      assert found == []
    else:
      assert any(expect in v for v in found), found


def _receptive_field(model, x, i, j):
  """The input pixels with a nonzero gradient of output (i, j) (channel 0): a set of (row, col)."""
  variables = random_params(model, x, train=False)
  grad = jax.jit(jax.grad(lambda v: model.apply(variables, v, train=False)[0, i, j, 0]))(x)
  return {tuple(p) for p in np.argwhere(np.asarray(grad[0, ..., 0]) != 0)}


def test_blind_spot_of_pixelcnn_not_of_gated_pixelcnn():
  # Same depth: the 7x7 first layer and two 3x3 layers in both.
  side, (i, j) = 12, (7, 5)
  x = _images(jax.random.key(9), 1, True, batch=1, side=side)
  plain = _receptive_field(PixelCNN(channels=1, hidden=8, num_blocks=2, num_values=1), x, i, j)
  gated = _receptive_field(GatedPixelCNN(channels=1, hidden=8, num_layers=3, num_values=1), x, i, j)
  earlier = {(r, c) for r in range(side) for c in range(side) if (r, c) < (i, j)}
  assert plain <= earlier and gated <= earlier
  # The gated model sees every earlier pixel within its reach R = 7 // 2 + 2 * (3 // 2) = 5:
  # R + 1 rows above (the vertical stack's (k//2 + 1)-row kernels), R columns either side.
  reach = 5
  above = {(r, c) for r in range(i - 1 - reach, i) for c in range(j - reach, j + reach + 1)}
  left = {(i, c) for c in range(j - reach, j)}
  assert gated == (above | left) & earlier
  # Plain PixelCNN: inside the box of what it sees, some earlier pixels above-right are missing.
  rows, cols = [r for r, _ in plain], [c for _, c in plain]
  box = {(r, c) for (r, c) in earlier if min(rows) <= r and min(cols) <= c <= max(cols)}
  blind = box - plain
  assert blind, "the plain PixelCNN should have a blind spot"
  assert all(r < i and c > j for r, c in blind), blind
  assert (i - 1, j + 4) in blind    # two 3x3 type-B layers reach only one column right per row up
  assert blind <= gated and plain <= gated


def test_pixelcnn_parameter_count_equals_peer():
  for c, h, blocks in ((3, 8, 2), (1, 16, 3), (3, 128, 15)):
    shapes = jax.eval_shape(lambda: PixelCNN(channels=c, hidden=h, num_blocks=blocks).init(
        jax.random.key(0), jnp.zeros((1, 8, 8, c)), train=False))
    # The peer (../shared/bench/peer_torch_pixelcnn.py): conv weights + biases (masks are buffers).
    conv = lambda cin, cout, k: cin * cout * k * k + cout  # noqa: E731
    peer = (conv(c, 2 * h, 7) + blocks * (conv(2 * h, h, 1) + conv(h, h, 3) + conv(h, 2 * h, 1))
            + conv(2 * h, 2 * h, 1) + conv(2 * h, 256 * c, 1))
    assert sum(p.size for p in jax.tree.leaves(shapes)) == peer
    # Plain HWIO kernels: the masks are not params.
    assert shapes["params"]["conv_in"]["kernel"].shape == (7, 7, c, 2 * h)


def test_output_shapes_dropout_and_conditioning(setup):
  y, _ = setup(setup.x)
  c = setup.model.channels
  if isinstance(setup.model, PixelCNNpp):
    expected = (BATCH, SIDE, SIDE, (10 if c == 3 else 3) * setup.model.nr_logistic_mix)
  elif setup.model.num_values == 1:
    expected = (BATCH, SIDE, SIDE, 1)
  else:
    expected = (BATCH, SIDE, SIDE, c, setup.model.num_values)
  assert y.shape == expected and y.dtype == np.float32 and np.isfinite(y).all()
  # Dropout (PixelCNN++ only) draws from the "dropout" rng; the masked models have none.
  has_dropout = isinstance(setup.model, PixelCNNpp)
  assert np.array_equal(setup(setup.x, key=7)[0], y) != has_dropout
  if setup.labels is not None:   # labels and cond both reach the outputs
    for kw in (dict(labels=(setup.labels + 1) % NUM_CLASSES), dict(cond=setup.cond + 1.0)):
      assert np.abs(setup(setup.x, **kw)[0] - y).max() > 1e-4, kw


def test_defaults_and_errors():
  d = PixelCNNpp()
  assert (d.nr_resnet, d.nr_filters, d.nr_logistic_mix, d.dropout) == (5, 160, 10, 0.5)
  x = jnp.zeros((1, 6, 6, 3))
  with pytest.raises(ValueError, match="divisible by 4"):
    jax.eval_shape(lambda: d.init(jax.random.key(0), x, train=False))
  with pytest.raises(ValueError, match="num_classes"):
    jax.eval_shape(lambda: PixelCNN(hidden=4, num_blocks=1).init(
        jax.random.key(0), x, jnp.zeros((1,), jnp.int32), train=False))
  with pytest.raises(ValueError, match="num_values=1"):
    jax.eval_shape(lambda: PixelCNN(hidden=4, num_blocks=1, num_values=1).init(
        jax.random.key(0), x, train=False))


def test_masks_and_shifted_transposed_convs():
  m = causal_mask((3, 3), 3, 6, "A", colors=3)
  # Centre tap: output groups (pairs of channels) R, G, B see input channels < their colour.
  np.testing.assert_array_equal(m[1, 1], [[0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1], [0] * 6])
  assert m[2].sum() == 0 and m[1, 2].sum() == 0 and m[0].all() and m[1, 0].all()
  b = causal_mask((1, 4), 3, 6, "B", colors=3, centre=(0, 3), out_blocks=2)
  np.testing.assert_array_equal(b[0, 3, :, :3], np.triu(np.ones((3, 3))))   # per gate half
  np.testing.assert_array_equal(b[0, 3, :, 3:], np.triu(np.ones((3, 3))))
  # MaskedConv convolves only its live rows of taps: equal to the full kernel x mask, centred.
  x = jax.random.normal(jax.random.key(1), (2, 5, 6, 3))
  for k, centre, mask_type in ((3, None, "B"), (7, None, "A"), ((3, 1), None, "B"),
                               ((1, 4), (0, 3), "A"), ((2, 3), (1, 1), "B")):
    layer = MaskedConv(6, k, mask_type, colors=3, centre=centre)
    params = random_params(layer, x)
    kernel = params["params"]["kernel"]
    kh, kw = kernel.shape[:2]
    ci, cj = centre or (kh // 2, kw // 2)
    full = jax.lax.conv_general_dilated(
        x, kernel * causal_mask((kh, kw), 3, 6, mask_type, 3, (ci, cj)), (1, 1),
        ((ci, kh - 1 - ci), (cj, kw - 1 - cj)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(jax.jit(layer.apply)(params, x), full + params["params"]["bias"],
                               rtol=1e-5, atol=1e-5, err_msg=f"kernel {k}, centre {centre}")
  # Transposed convs: equal to flax's VALID ConvTranspose then the reference's crop, and an input
  # pixel reaches only rows at or below and (down-right) columns at or right of 2 x its position.
  x = jax.random.normal(jax.random.key(0), (1, 4, 4, 3))
  for layer, kw, crop in ((DownShiftedConvTranspose(5), 3, 1),
                          (DownRightShiftedConvTranspose(5), 2, 0)):
    params = random_params(layer, x)
    y = jax.jit(layer.apply)(params, x)
    assert y.shape == (1, 8, 8, 5)
    ref = jax.jit(nn.ConvTranspose(5, (2, kw), strides=(2, 2), padding="VALID").apply)(params, x)
    np.testing.assert_allclose(y, ref[:, :8, crop:crop + 8], rtol=1e-6, atol=1e-6)
    g = jax.jit(jax.grad(lambda v: layer.apply(params, v)[0, 5, 3].sum()))(x)[0].any(-1)
    assert np.argwhere(np.asarray(g)).tolist() == ([[2, 1], [2, 2]] if crop else [[2, 1]])


def _plain_params(tree):
  """A weight-normalised params tree -> the plain layers' tree: kernel = scale * v / |v| (norm over
  every axis but the output channels), the same bias."""
  if not isinstance(tree, dict):
    return tree
  if "direction" in tree:
    v = tree["direction"]
    norm = jnp.sqrt(jnp.sum(jnp.square(v), axis=tuple(range(v.ndim - 1))))
    return {"kernel": tree["scale"] * v / norm, "bias": tree["bias"]}
  return {k: _plain_params(v) for k, v in tree.items()}


def test_weight_norm_is_the_plain_network_with_normalised_kernels_and_data_dependent_init():
  """PixelCNN++ with weight_norm=True computes the plain (causal) network with kernels g v / |v|
  (so causality carries over), and its init sets each layer's scale and bias from the init batch:
  a weight-normalised layer's outputs on that batch have zero mean and standard deviation
  init_scale per channel (1, or 0.1 for the gated blocks' second conv)."""
  key = jax.random.key(0)
  x = _images(key, 3, False, batch=8, side=4)   # the smallest side (two stride-2 levels)
  kw = dict(channels=3, nr_resnet=0, nr_filters=8, nr_logistic_mix=2, dropout=0.0)
  wn, plain = PixelCNNpp(**kw, weight_norm=True), PixelCNNpp(**kw)
  params = jax.jit(lambda k, v: wn.init(k, v, train=False))(key, x)["params"]
  converted = _plain_params(params)
  plain_shapes = jax.eval_shape(lambda: plain.init(key, x, train=False))["params"]
  assert jax.tree.structure(converted) == jax.tree.structure(plain_shapes)
  out_wn = jax.jit(lambda p, v: wn.apply({"params": p}, v, train=False))(params, x)
  out_plain = jax.jit(lambda p, v: plain.apply({"params": p}, v, train=False))(converted, x)
  np.testing.assert_allclose(out_wn, out_plain, rtol=1e-5, atol=1e-5)
  # The output layer was initialised on the activations the batch produced: standardised.
  np.testing.assert_allclose(out_wn.mean((0, 1, 2)), 0.0, atol=1e-4)
  np.testing.assert_allclose(out_wn.std((0, 1, 2)), 1.0, rtol=1e-3)
  # Single layers, including a transposed conv and the init_scale.
  for layer, same_plain in ((Conv(6, (3, 3), weight_norm=True, init_scale=0.1), Conv(6, (3, 3))),
                            (DownRightShiftedConvTranspose(5, weight_norm=True),
                             DownRightShiftedConvTranspose(5))):
    p = layer.init(key, x)
    assert set(p["params"]) == {"direction", "scale", "bias"}
    y = layer.apply(p, x)
    np.testing.assert_allclose(y.mean((0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.std((0, 1, 2)), layer.init_scale, rtol=1e-4)
    other = x[::-1] * 0.5   # another batch: the same function (apply does not re-initialise)
    np.testing.assert_allclose(layer.apply(p, other),
                               same_plain.apply({"params": _plain_params(p["params"])}, other),
                               rtol=1e-5, atol=1e-5)
