"""CLIP networks (jaxgen.models.clip) and the weight converters (jaxgen.weights.clip)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.errors import ConfigError
from jaxgen.models import clip

TINY_VIT = dict(embed_dim=16, image_resolution=32, vision_layers=2, vision_width=32,
                vision_patch_size=8, context_length=12, vocab_size=50, transformer_width=32,
                transformer_heads=2, transformer_layers=2, vision_heads=2, quick_gelu=True)


def test_param_counts_equal_the_references():
  # transformers' CLIPModel(CLIPConfig()) and open_clip / openai ViT-B/32: 151,277,313;
  # openai/CLIP's model.py CLIP(1024, 224, (3, 4, 6, 3), 64, None, 77, 49408, 512, 8, 12): 102,007,137
  # (counted with torch by tests/golden/make_clip_golden.py).
  assert clip.param_count(clip.VIT_B32) == 151_277_313
  assert clip.param_count(clip.RN50) == 102_007_137


def test_text_is_causal_and_pooled_at_eot():
  model = clip.from_config(TINY_VIT)
  tokens = jnp.asarray(np.random.default_rng(0).integers(1, 40, (2, 12)), jnp.int32)
  tokens = tokens.at[:, 5].set(49)              # EOT: the largest id
  variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), tokens)
  text = lambda t: model.apply(variables, t, method=clip.CLIP.encode_text)
  base = text(tokens)
  after = tokens.at[:, 6:].set(7)               # tokens after EOT cannot change the EOT feature
  np.testing.assert_array_equal(np.asarray(text(after)), np.asarray(base))
  before = tokens.at[:, 2].set(7)               # tokens before it do
  assert np.abs(np.asarray(text(before)) - np.asarray(base)).max() > 1e-3
  scale = model.apply(variables, jnp.zeros((2, 32, 32, 3)), tokens)[2]
  np.testing.assert_allclose(float(scale), np.log(1 / 0.07), rtol=1e-6)


def test_config_errors():
  with pytest.raises(ConfigError, match="vision_patch_size"):
    clip.from_config(dict(TINY_VIT, vision_patch_size=5))
  with pytest.raises(ConfigError, match="vision_heads"):
    clip.from_config(dict(TINY_VIT, vision_heads=3))
  with pytest.raises(ConfigError, match="missing"):
    clip.from_config({k: v for k, v in TINY_VIT.items() if k != "embed_dim"})
  with pytest.raises(ConfigError, match="dtype"):
    clip.from_config(dict(TINY_VIT, dtype="float64"))
