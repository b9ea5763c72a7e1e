"""jaxgen.evaluators.Context.embed: one sharded pass of a feature function over an eval split."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import data as D
from jaxgen import evaluators, parallel
from jaxgen.configs import base_config
from jaxgen.errors import ConfigError


def _row_means(state, batch):
  """Per-row channel means, scaled by the (state) number: [B, C]."""
  return jnp.mean(batch["image"], axis=(1, 2)) * state


def test_embed_matches_direct_pass_in_order_without_padding():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(21, 8, 8, 3), dtype=np.uint8)
  D.register_arrays("embed_rows", images, labels=np.arange(21, dtype=np.int32) % 10)
  c = base_config()
  c.data.update(dict(source="arrays", name="embed_rows", image_size=8, channels=3, num_classes=10,
                     train_split="train", eval_split="train"))
  c.eval.update(dict(batch_size=8, num_examples=-1))   # 3 batches of 8: 3 padding rows at the end
  mesh = parallel.create_mesh(c.mesh)
  ctx = evaluators.Context(None, c, 2.0, mesh, jax.random.PRNGKey(0))
  feats, fields = ctx.embed(_row_means)
  want = (images.astype(np.float32) / 127.5 - 1.0).mean(axis=(1, 2)) * 2.0
  assert feats.shape == (21, 3) and feats.dtype == np.float32
  np.testing.assert_allclose(feats, want, atol=1e-5)
  np.testing.assert_array_equal(fields["label"], np.arange(21) % 10)
  assert "caption_tokens" not in fields


def test_embed_of_an_empty_split_is_a_config_error():
  D.register_arrays("embed_empty", np.zeros((0, 8, 8, 3), np.uint8))
  c = base_config()
  c.data.update(dict(source="arrays", name="embed_empty", image_size=8, channels=3,
                     train_split="train", eval_split="train"))
  c.eval.update(dict(batch_size=8, num_examples=-1))
  ctx = evaluators.Context(None, c, 1.0, parallel.create_mesh(c.mesh), jax.random.PRNGKey(0))
  with pytest.raises((ConfigError, ValueError)):
    ctx.embed(_row_means)
