"""jaxgen.nn.conv: the sub-pixel transposed convolution equals flax's ConvTranspose."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.nn.conv import ConvTranspose2x


@pytest.mark.parametrize("padding", ["SAME", ((2, 2), (2, 2))])
@pytest.mark.parametrize("shape", [(2, 4, 4, 8), (3, 5, 7, 3)])
def test_conv_transpose_2x_equals_flax(shape, padding):
  x = jax.random.normal(jax.random.PRNGKey(0), shape)
  ref_layer = nn.ConvTranspose(6, (4, 4), strides=(2, 2), padding=padding)
  ours = ConvTranspose2x(6)
  params = ours.init(jax.random.PRNGKey(1), x)
  ref_params = ref_layer.init(jax.random.PRNGKey(1), x)
  # Same parameter tree and the same initial values (drop-in for existing checkpoints and configs).
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, ref_params)
  np.testing.assert_array_equal(params["params"]["kernel"], ref_params["params"]["kernel"])
  params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.PRNGKey(2), p.shape), params)
  y, y_ref = ours.apply(params, x), ref_layer.apply(params, x)
  assert y.shape == (shape[0], 2 * shape[1], 2 * shape[2], 6)
  np.testing.assert_allclose(y, y_ref, atol=1e-5 * float(jnp.max(jnp.abs(y_ref))))
  w = jax.random.normal(jax.random.PRNGKey(3), y.shape)
  g = jax.grad(lambda p, x: jnp.sum(ours.apply(p, x) * w), (0, 1))(params, x)
  g_ref = jax.grad(lambda p, x: jnp.sum(ref_layer.apply(p, x) * w), (0, 1))(params, x)
  for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
    np.testing.assert_allclose(a, b, atol=1e-5 * float(jnp.max(jnp.abs(b))))
