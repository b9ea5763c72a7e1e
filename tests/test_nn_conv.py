"""jaxgen.nn.conv and jaxgen.nn.linear: drop-ins equal to flax's layers, with faster gradients."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.nn.conv import ConvTranspose2x
from jaxgen.nn.linear import Conv, Dense, sum_rows


@pytest.mark.parametrize("padding", ["SAME", ((2, 2), (2, 2))])
@pytest.mark.parametrize("shape", [(2, 4, 4, 8), (3, 5, 7, 3)])
@pytest.mark.parametrize("features", [6, 24])   # the GEMM path (<= 16 channels) and the sub-pixel one
def test_conv_transpose_2x_equals_flax(shape, padding, features):
  x = jax.random.normal(jax.random.PRNGKey(0), shape)
  ref_layer = nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding=padding)
  ours = ConvTranspose2x(features)
  params = ours.init(jax.random.PRNGKey(1), x)
  ref_params = ref_layer.init(jax.random.PRNGKey(1), x)
  # Same parameter tree and the same initial values (drop-in for existing checkpoints and configs).
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, ref_params)
  np.testing.assert_array_equal(params["params"]["kernel"], ref_params["params"]["kernel"])
  params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.PRNGKey(2), p.shape), params)
  y, y_ref = ours.apply(params, x), ref_layer.apply(params, x)
  assert y.shape == (shape[0], 2 * shape[1], 2 * shape[2], features)
  np.testing.assert_allclose(y, y_ref, atol=1e-5 * float(jnp.max(jnp.abs(y_ref))))
  w = jax.random.normal(jax.random.PRNGKey(3), y.shape)
  g = jax.grad(lambda p, x: jnp.sum(ours.apply(p, x) * w), (0, 1))(params, x)
  g_ref = jax.grad(lambda p, x: jnp.sum(ref_layer.apply(p, x) * w), (0, 1))(params, x)
  for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
    np.testing.assert_allclose(a, b, atol=1e-5 * float(jnp.max(jnp.abs(b))))


def _same_as_flax(ours, ref, x):
  """Same params tree and initial values as the flax layer; equal outputs and gradients."""
  params, ref_params = ours.init(jax.random.PRNGKey(1), x), ref.init(jax.random.PRNGKey(1), x)
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, ref_params)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref_params)):
    np.testing.assert_array_equal(a, b)
  params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.PRNGKey(2), p.shape), params)
  y, y_ref = ours.apply(params, x), ref.apply(params, x)
  assert y.dtype == y_ref.dtype
  np.testing.assert_allclose(y, y_ref, rtol=1e-6, atol=1e-6)
  w = jax.random.normal(jax.random.PRNGKey(3), y.shape)
  g = jax.grad(lambda p, x: jnp.sum(ours.apply(p, x) * w), (0, 1))(params, x)
  g_ref = jax.grad(lambda p, x: jnp.sum(ref.apply(p, x) * w), (0, 1))(params, x)
  assert jax.tree.structure(g) == jax.tree.structure(g_ref)
  for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(b))))


@pytest.mark.parametrize("kw", [dict(kernel_size=(3, 3), padding=((1, 1), (1, 1))),
                                dict(kernel_size=(3, 3), strides=2, padding=((1, 1), (1, 1))),
                                dict(kernel_size=(1, 1), padding="VALID"),
                                dict(kernel_size=(4, 4), strides=(2, 2), padding="SAME")])
def test_conv_equals_flax(kw):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 6, 5))
  _same_as_flax(Conv(7, **kw), nn.Conv(7, **kw), x)


@pytest.mark.parametrize("features,c_in,kw", [
    (3, 5, dict(kernel_size=(7, 7), padding="VALID")),                 # an image layer (c7s1-3)
    (1, 6, dict(kernel_size=(4, 4), padding=((1, 1), (1, 1)))),        # PatchGAN's logits
    (7, 3, dict(kernel_size=(3, 3), padding="SAME")),                  # few inputs (an RGB input layer)
    (2, 3, dict(kernel_size=(3, 2), padding="SAME"))])                 # few of both, even kernel side
def test_conv_few_channels_equals_flax(features, c_in, kw):
  """Stride-1 layers with <= FEW_CHANNELS outputs (or inputs) take conv_few_outputs (or
  conv_few_inputs): same params, outputs and gradients as flax's Conv."""
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 8, c_in))
  _same_as_flax(Conv(features, **kw), nn.Conv(features, **kw), x)


def _same_to_second_order(ours, ref, x, k):
  """ours(x, k) == ref(x, k), and so are their first derivatives and those of a gradient penalty
  on the input gradient (as WGAN-GP and R1 take it), in x and k."""
  w = jax.random.normal(jax.random.PRNGKey(2), ref(x, k).shape)
  np.testing.assert_allclose(ours(x, k), ref(x, k), rtol=1e-5, atol=1e-5)
  first = lambda f: jax.grad(lambda x, k: jnp.sum(f(x, k) * w), (0, 1))  # noqa: E731
  penalty = lambda f: jax.grad(  # noqa: E731
      lambda x, k: jnp.sum(jnp.square(jax.grad(lambda x: jnp.sum(jnp.tanh(f(x, k)) * w))(x))), (0, 1))
  for grad_fn in (first, penalty):
    for a, b in zip(grad_fn(ours)(x, k), grad_fn(ref)(x, k)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(b))))


@pytest.mark.parametrize("c_in,c_out,kernel", [(5, 3, (4, 3)), (3, 6, (4, 3)), (2, 3, (4, 3)),
                                               (5, 3, (9, 8)), (6, 2, (8, 9))])   # > 49 taps: by rows
def test_few_channel_convs_equal_xla_to_second_order(c_in, c_out, kernel):
  """conv_few_outputs / conv_few_inputs (hand-written VJPs, each using the other for an input
  gradient) and conv_few_outputs_by_rows: outputs, first derivatives and a gradient penalty's
  derivatives equal XLA's."""
  from jaxgen.nn.conv import conv_few_outputs, conv_few_outputs_by_rows, few_channel_conv
  ours = few_channel_conv(c_in, c_out, kernel)
  assert (ours is conv_few_outputs_by_rows) == (kernel[0] * kernel[1] > 49)
  ref = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), "VALID",  # noqa: E731
                                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 11, 10, c_in))
  k = jax.random.normal(jax.random.PRNGKey(1), (*kernel, c_in, c_out))
  _same_to_second_order(ours, ref, x, k)
  assert few_channel_conv(3, 64, (9, 9)) is None and few_channel_conv(64, 64, (3, 3)) is None
  assert few_channel_conv(5, 3, (4, 3)) is conv_few_outputs


@pytest.mark.parametrize("shape", [(4, 5), (2, 9, 5)])
def test_dense_equals_flax(shape):
  _same_as_flax(Dense(6), nn.Dense(6), jax.random.normal(jax.random.PRNGKey(0), shape))


def test_sum_rows_equals_sum():
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 4, 5, 6)) + 3.0
  np.testing.assert_allclose(sum_rows(x), np.asarray(x, np.float64).sum((0, 1, 2)), rtol=1e-5)
  np.testing.assert_allclose(sum_rows(x, batch_dims=1), np.asarray(x, np.float64).sum((1, 2)), rtol=1e-5)
  bf = sum_rows(x.astype(jnp.bfloat16))   # accumulated in float32
  assert bf.dtype == jnp.float32
  np.testing.assert_allclose(bf, np.asarray(x.astype(jnp.bfloat16), np.float64).sum((0, 1, 2)), rtol=1e-5)


# transpose: the GEMM path (<= 16 channels) and sub-pixel; "xla": the kernel gradients other backends
# take (XLA's own), as a CPU run would not otherwise reach them.
@pytest.mark.parametrize("op,c_out,backend", [("conv", 3, "cpu"), ("conv3x3", 6, "cpu"),
                                               ("transpose", 3, "cpu"), ("transpose", 24, "cpu"),
                                               ("conv", 3, "xla"), ("transpose", 24, "xla")])
def test_s2_custom_gradients_equal_xla_to_second_order(op, c_out, backend, monkeypatch):
  """conv_4x4_s2 / conv_transpose_4x4_s2 / conv_3x3_s2 carry hand-written VJPs (sub-pixel input
  gradients, batch-minor kernel gradients on CPU): first and second derivatives (a gradient penalty
  on the input gradient, as WGAN-GP and R1 take it) equal XLA's autodiff of the plain convolutions."""
  import jaxgen.nn.conv
  if backend == "xla":
    monkeypatch.setattr(jaxgen.nn.conv, "_cpu", lambda: False)
  from jaxgen.nn.conv import conv_3x3_s2, conv_4x4_s2, conv_transpose_4x4_s2
  dn = ("NHWC", "HWIO", "NHWC")
  size = 3 if op == "conv3x3" else 4
  if op == "transpose":
    ours = conv_transpose_4x4_s2
    ref = lambda x, k: nn.ConvTranspose(c_out, (4, 4), (2, 2), padding="SAME", use_bias=False).apply(  # noqa: E731
        {"params": {"kernel": k}}, x)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 3, 5))
  else:
    ours = conv_3x3_s2 if size == 3 else conv_4x4_s2
    ref = lambda x, k: jax.lax.conv_general_dilated(x, k, (2, 2), ((1, 1), (1, 1)), dimension_numbers=dn)  # noqa: E731
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 6, 5))
  k = jax.random.normal(jax.random.PRNGKey(1), (size, size, 5, c_out))
  _same_to_second_order(ours, ref, x, k)


def test_conv_takes_the_sub_pixel_gradient_only_where_it_applies():
  """Conv routes 3x3 / 4x4 stride-2 pad-1 layers on even sides through the custom-VJP convs (their
  input gradient has no input-dilated convolution left in the HLO) and odd sides through XLA's
  (same values either way, see test_conv_equals_flax)."""
  def grad_hlo(shape, kernel):
    layer = Conv(8, (kernel, kernel), strides=2, padding=((1, 1), (1, 1)))
    x = jnp.ones(shape)
    params = layer.init(jax.random.PRNGKey(0), x)
    return jax.jit(jax.grad(lambda x: jnp.sum(layer.apply(params, x) ** 2))).lower(x).as_text()
  for kernel in (3, 4):
    assert "lhs_dilate = [2, 2]" not in grad_hlo((2, 8, 6, 4), kernel)
    assert "lhs_dilate = [2, 2]" in grad_hlo((2, 7, 6, 4), kernel)


@pytest.mark.parametrize("shape", [(2, 8, 6, 3), (3, 7, 9, 5)])   # even, and odd sides (floored)
def test_max_pool_2x2_equals_flax_with_ties(shape):
  """jaxgen.nn.pool.max_pool_2x2 (hand-written VJP): flax's max_pool values and gradients, including
  ties (ReLU zeros; the gradient goes to the first maximum of a window, as XLA's)."""
  from jaxgen.nn.pool import max_pool_2x2
  x = jax.nn.relu(jax.random.normal(jax.random.PRNGKey(0), shape))
  x = x.at[0, 0, 0, 0].set(0.7).at[0, 1, 1, 0].set(0.7)          # a positive tie
  ref = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))  # noqa: E731
  np.testing.assert_array_equal(max_pool_2x2(x), ref(x))
  w = jax.random.normal(jax.random.PRNGKey(1), ref(x).shape)
  grad = lambda f: jax.grad(lambda x: jnp.sum(f(x) * w))(x)  # noqa: E731
  np.testing.assert_array_equal(grad(max_pool_2x2), grad(ref))
