"""jaxgen.nn.norm: BatchNorm equal to flax.linen.BatchNorm (values, gradients, running statistics,
params and collections), its closed-form gradient against autodiff, and instance_norm."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.models import dcgan
from jaxgen.nn.norm import BatchNorm, batch_norm_train, instance_norm

_SCALE_INIT = dcgan._SCALE_INIT   # N(1, 0.02): a non-default init, so init order matters
SHAPE = (4, 5, 6, 8)              # [B, H, W, C]; 120 rows per channel


def _pair(dtype=jnp.float32, **kw):
  ours = BatchNorm(momentum=0.9, epsilon=1e-5, dtype=dtype, scale_init=_SCALE_INIT, **kw)
  ref = nn.BatchNorm(momentum=0.9, epsilon=1e-5, dtype=dtype, scale_init=_SCALE_INIT, **kw)
  return ours, ref


def _inputs(shape=SHAPE, dtype=jnp.float32):
  """Per-channel offsets and scales, so a statistic taken over the wrong axes would show."""
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
  c = shape[-1]
  x = (jax.random.normal(k1, shape) * jax.random.uniform(k2, (c,), minval=0.5, maxval=3.0)
       + jax.random.normal(k3, (c,)) * 2.0)
  return x.astype(dtype)


def _variables(layer, x):
  """Init with use_running_average=False, then non-trivial running stats, scale and bias."""
  v = layer.init(jax.random.PRNGKey(1), x, use_running_average=False)
  c = x.shape[-1]
  ks = jax.random.split(jax.random.PRNGKey(2), 4)
  return {"params": {"scale": v["params"]["scale"] + 0.3 * jax.random.normal(ks[0], (c,)),
                     "bias": 0.5 * jax.random.normal(ks[1], (c,))},
          "batch_stats": {"mean": jax.random.normal(ks[2], (c,)),
                          "var": jax.random.uniform(ks[3], (c,), minval=0.5, maxval=2.0)}}


def _close(a, b, rtol=1e-5, what=""):
  a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
  np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * float(np.max(np.abs(b))), err_msg=what)


def test_same_variables_and_initial_values_as_flax():
  ours, ref = _pair()
  x = _inputs()
  v, v_ref = ours.init(jax.random.PRNGKey(1), x, use_running_average=False), ref.init(
      jax.random.PRNGKey(1), x, use_running_average=False)
  assert jax.tree.map(lambda a: (a.shape, a.dtype), v) == jax.tree.map(lambda a: (a.shape, a.dtype), v_ref)
  for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(v_ref)):
    np.testing.assert_array_equal(a, b)
  # The scale really is drawn (not all ones), so equality above checks the init keys and order.
  assert float(jnp.std(v["params"]["scale"])) > 1e-3
  # Initialising does not move the running statistics (flax: not while is_initializing()).
  np.testing.assert_array_equal(v["batch_stats"]["mean"], np.zeros(8))
  np.testing.assert_array_equal(v["batch_stats"]["var"], np.ones(8))


@pytest.mark.parametrize("shape", [SHAPE, (16, 3)])
def test_train_mode_equals_flax(shape):
  ours, ref = _pair()
  x = _inputs(shape)
  v = _variables(ref, x)
  w = jax.random.normal(jax.random.PRNGKey(3), shape)

  def run(layer, variables, x):
    y, upd = layer.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
    return jnp.sum(y * w), (y, upd)

  (_, (y, upd)), g = jax.value_and_grad(run, (1, 2), has_aux=True)(ours, v, x)
  (_, (y_ref, upd_ref)), g_ref = jax.value_and_grad(run, (1, 2), has_aux=True)(ref, v, x)
  _close(y, y_ref, what="output")
  _close(upd["batch_stats"]["mean"], upd_ref["batch_stats"]["mean"], what="running mean")
  _close(upd["batch_stats"]["var"], upd_ref["batch_stats"]["var"], what="running var")
  # Running stats by hand: 0.9 * old + 0.1 * batch statistic (biased variance).
  x64 = np.asarray(x, np.float64).reshape(-1, shape[-1])
  _close(upd["batch_stats"]["mean"], 0.9 * np.asarray(v["batch_stats"]["mean"]) + 0.1 * x64.mean(0))
  _close(upd["batch_stats"]["var"], 0.9 * np.asarray(v["batch_stats"]["var"]) + 0.1 * x64.var(0))
  _close(g[1], g_ref[1], rtol=1e-4, what="d x")
  _close(g[0]["params"]["scale"], g_ref[0]["params"]["scale"], rtol=1e-4, what="d scale")
  _close(g[0]["params"]["bias"], g_ref[0]["params"]["bias"], rtol=1e-4, what="d bias")


def test_eval_mode_equals_flax_and_writes_nothing():
  ours, ref = _pair()
  x = _inputs()
  v = _variables(ref, x)
  w = jax.random.normal(jax.random.PRNGKey(3), SHAPE)
  run = lambda layer, v, x: jnp.sum(layer.apply(v, x, use_running_average=True) * w)  # noqa: E731
  y = ours.apply(v, x, use_running_average=True)
  _close(y, ref.apply(v, x, use_running_average=True), what="output")
  # By hand: (x - running mean) / sqrt(running var + eps) * scale + bias.
  p, s = v["params"], v["batch_stats"]
  _close(y, (x - s["mean"]) / np.sqrt(s["var"] + 1e-5) * p["scale"] + p["bias"])
  g, g_ref = jax.grad(run, (1, 2))(ours, v, x), jax.grad(run, (1, 2))(ref, v, x)
  for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
    _close(a, b, rtol=1e-4)
  # Set at construction instead of at call time: the same (flax's merge_param).
  _, upd = BatchNorm(use_running_average=True, scale_init=_SCALE_INIT).apply(v, x, mutable=["batch_stats"])
  for a, b in zip(jax.tree.leaves(upd), jax.tree.leaves({"batch_stats": v["batch_stats"]})):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("train", [True, False])
def test_bfloat16_inputs_float32_statistics(train):
  ours, ref = _pair(jnp.bfloat16)
  x = _inputs(dtype=jnp.bfloat16)
  v = _variables(ref, x)
  w = jax.random.normal(jax.random.PRNGKey(3), SHAPE)

  def run(layer, variables, x):
    y, upd = layer.apply(variables, x, use_running_average=not train, mutable=["batch_stats"])
    return jnp.sum(y.astype(jnp.float32) * w), (y, upd)

  (_, (y, upd)), g = jax.value_and_grad(run, (1, 2), has_aux=True)(ours, v, x)
  (_, (y_ref, upd_ref)), g_ref = jax.value_and_grad(run, (1, 2), has_aux=True)(ref, v, x)
  assert y.dtype == jnp.bfloat16 and g[1].dtype == jnp.bfloat16
  assert upd["batch_stats"]["mean"].dtype == jnp.float32
  # Both compute in float32 and round once to bfloat16: at most one bfloat16 ulp apart.
  _close(y, y_ref, rtol=2 ** -7, what="output")
  # The statistics are float32 sums of the bfloat16 values (exact in float32), not bfloat16 sums.
  for k in ("mean", "var"):
    _close(upd["batch_stats"][k], upd_ref["batch_stats"][k], rtol=1e-5, what=k)
  _close(g[0]["params"]["scale"], g_ref[0]["params"]["scale"], rtol=1e-4, what="d scale")
  _close(g[0]["params"]["bias"], g_ref[0]["params"]["bias"], rtol=1e-4, what="d bias")
  _close(g[1], g_ref[1], rtol=2 ** -6, what="d x")


def _reference_batch_norm(x, scale, bias, epsilon):
  """Plain jnp, differentiated by autodiff: the formula batch_norm_train's closed form must match."""
  x2 = x.reshape(-1, x.shape[-1]).astype(jnp.float32)
  mean = x2.mean(0)
  var = jnp.mean(jnp.square(x2 - mean), 0)
  y = (x2 - mean) / jnp.sqrt(var + epsilon) * scale + bias
  return y.reshape(x.shape), mean, var


def test_closed_form_gradient_equals_autodiff_including_the_statistics():
  x = _inputs()
  scale = 1.0 + 0.3 * jax.random.normal(jax.random.PRNGKey(4), (8,))
  bias = jax.random.normal(jax.random.PRNGKey(5), (8,))
  ws = [jax.random.normal(k, s) for k, s in zip(jax.random.split(jax.random.PRNGKey(6), 3),
                                               (SHAPE, (8,), (8,)))]

  def loss(fn, x, scale, bias):   # the mean and variance outputs carry cotangents too
    return sum(jnp.sum(o * w) for o, w in zip(fn(x, scale, bias, 1e-5), ws))

  g = jax.grad(loss, (1, 2, 3))(batch_norm_train, x, scale, bias)
  g_ref = jax.grad(loss, (1, 2, 3))(_reference_batch_norm, x, scale, bias)
  for a, b, what in zip(g, g_ref, ("x", "scale", "bias")):
    _close(a, b, rtol=1e-4, what=what)
  # And autodiff itself against a central finite difference along a random direction.
  d = jax.random.normal(jax.random.PRNGKey(7), SHAPE)
  f = lambda t: loss(batch_norm_train, x + t * d, scale, bias)  # noqa: E731
  fd = (f(1e-2) - f(-1e-2)) / 2e-2
  np.testing.assert_allclose(float(jnp.sum(g[0] * d)), float(fd), rtol=2e-2)


def test_variance_keeps_its_digits_when_the_mean_dominates():
  # mean 1000, std 0.01: E[x^2] - E[x]^2 in float32 loses everything (1e6 +- 0.06 ulp 0.06); the
  # two-pass variance stays within a percent of float64's.
  x = 1000.0 + 0.01 * jax.random.normal(jax.random.PRNGKey(0), (256, 4))
  _, _, var = batch_norm_train(x, jnp.ones(4), jnp.zeros(4), 1e-5)
  np.testing.assert_allclose(var, np.asarray(x, np.float64).var(0), rtol=1e-2)


def test_dcgan_variables_unchanged_by_the_new_batchnorm(monkeypatch):
  """A checkpoint written with flax's BatchNorm restores into today's DCGAN: same tree, shapes,
  dtypes and initial values; and G's training-mode forward pass agrees."""
  g, d = dcgan.Generator(16, 3, 8), dcgan.Discriminator(16, 8)
  z, img = jax.random.normal(jax.random.PRNGKey(0), (4, 100)), _inputs((4, 16, 16, 3))

  def trees():
    gv, dv = jax.jit(lambda: (g.init(jax.random.PRNGKey(1), z, train=False),
                              d.init(jax.random.PRNGKey(2), img, train=False)))()
    return gv, dv, g.apply(gv, z, train=True, mutable=["batch_stats"])

  ours = trees()
  monkeypatch.setattr(dcgan, "_batch_norm", lambda train, dtype, name: nn.BatchNorm(
      use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
      param_dtype=jnp.float32, scale_init=_SCALE_INIT, name=name))
  ref = trees()
  for a, b in zip(ours[:2], ref[:2]):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      assert x.dtype == y.dtype
      np.testing.assert_array_equal(x, y)
  assert "batch_stats" in ours[0] and "up1_bn" in ours[0]["batch_stats"]
  for a, b in zip(ours[2:], ref[2:]):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      _close(x, y, rtol=1e-4)


def test_instance_norm_by_hand():
  x = _inputs((2, 5, 6, 3)).astype(jnp.bfloat16)
  y = instance_norm(x)
  x64 = np.asarray(x, np.float64)
  m, v = x64.mean((1, 2), keepdims=True), x64.var((1, 2), keepdims=True)
  assert y.dtype == jnp.float32
  _close(y, (x64 - m) / np.sqrt(v + 1e-5), rtol=1e-5)
