"""Tests of the DDPM U-Net: parameter count, parity with diffusers' UNet2DModel, bfloat16, dropout,
conditioning, config errors. The golden file comes from tests/golden/make_unet_golden.py."""
import math
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxgen.models.unet import UNet, params_from_diffusers, unet_from_config
from jaxgen.nn.embeddings import timestep_embedding

GOLDEN = pathlib.Path(__file__).parent / "golden" / "unet_diffusers_small.npz"
# The miniature of tests/golden/make_unet_golden.py's CONFIG.
SMALL = dict(ch=16, ch_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(8,), num_groups=4,
             num_classes=10, dropout=0.1)


@pytest.fixture(scope="module")
def golden():
  d = np.load(GOLDEN)
  state_dict = {k[2:]: d[k] for k in d.files if k.startswith("w/")}
  return dict(x=d["x"], t=d["t"], y=d["y"], out=d["out"],
              params=params_from_diffusers(state_dict, num_levels=len(SMALL["ch_mult"])))


def _rel_max(a, ref):
  return float(np.abs(np.asarray(a) - ref).max() / np.abs(ref).max())


def test_cifar10_parameter_count():
  # diffusers' UNet2DModel with the settings of ../shared/bench/peer_torch_ddpm_unet.py: 35,746,307.
  model = UNet()
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)),
                                             jnp.zeros((1,), jnp.int32), train=False))
  assert sum(x.size for x in jax.tree.leaves(shapes)) == 35_746_307
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(shapes))


def test_converted_params_match_init_structure(golden):
  model = UNet(**SMALL)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), golden["x"], golden["t"],
                                             golden["y"], train=False))["params"]
  assert jax.tree.structure(shapes) == jax.tree.structure(golden["params"])
  jax.tree.map(lambda s, p: np.testing.assert_equal(s.shape, p.shape), shapes, golden["params"])


def test_float32_matches_diffusers(golden):
  model = UNet(**SMALL)
  apply = jax.jit(lambda p, x, t, y: model.apply({"params": p}, x, t, y, train=False))
  out = apply(golden["params"], golden["x"], golden["t"], golden["y"])
  assert out.dtype == jnp.float32 and out.shape == golden["out"].shape
  # Measured 5e-7 (the golden output is float64 torch); a wrong layer gives O(1).
  assert _rel_max(out, golden["out"]) < 1e-5
  # The labels matter (so the class embedding was really loaded and added).
  out_y = apply(golden["params"], golden["x"], golden["t"], golden["y"][::-1].copy())
  assert _rel_max(out_y, golden["out"]) > 1e-3


def test_bfloat16_close_to_float32(golden):
  model = UNet(**SMALL, dtype=jnp.bfloat16)
  out = jax.jit(lambda p: model.apply({"params": p}, golden["x"], golden["t"], golden["y"],
                                      train=False))(golden["params"])
  assert out.dtype == jnp.float32
  # bfloat16 has 8 significant bits (relative step 2**-8 = 3.9e-3); through ~25 layers the error
  # measured 0.9% of max|out| (0.8% relative L2). Bounds: 3% max, 2% L2.
  ref = golden["out"]
  assert _rel_max(out, ref) < 3e-2
  assert np.linalg.norm(np.asarray(out) - ref) / np.linalg.norm(ref) < 2e-2


def test_dropout_and_null_label(golden):
  model = UNet(**SMALL)
  x, t, y, params = golden["x"], golden["t"], golden["y"], golden["params"]

  @jax.jit
  def run(key, y):
    return model.apply({"params": params}, x, t, y, train=True, rngs={"dropout": key})

  a, b = run(jax.random.key(1), y), run(jax.random.key(2), y)
  assert _rel_max(a, golden["out"]) > 1e-3 and _rel_max(a, b) > 1e-3
  np.testing.assert_array_equal(run(jax.random.key(1), y), a)
  # y=None is the null label (10) for everyone: example 1 of the golden batch has y=10.
  out_none = jax.jit(lambda: model.apply({"params": params}, x, t, None, train=False))()
  np.testing.assert_allclose(out_none[1], golden["out"][1], rtol=0, atol=1e-5)
  assert _rel_max(out_none[0], golden["out"][0]) > 1e-3


def test_init_output_is_zero_and_gradients_flow():
  # DDPM init: the output convolution starts at (almost) zero, so the first prediction is ~0.
  model = UNet(ch=16, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(8,), num_groups=8)
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  t = jnp.array([0, 999])
  # An rbg key: threefry's unrolled hash for every initializer triples this test's compile time.
  params = jax.jit(lambda: model.init(jax.random.key(1, impl="rbg"), x, t, train=False))()["params"]
  loss = lambda p: jnp.mean(jnp.square(  # noqa: E731
      model.apply({"params": p}, x, t, train=True, rngs={"dropout": jax.random.key(2)}) - x))
  out, grads = jax.jit(lambda p: (model.apply({"params": p}, x, t, train=False),
                                  jax.grad(loss)(p)))(params)
  # Weights of scale 1e-10 (variance scaling) on 144 inputs of size ~1: outputs ~1e-5.
  assert out.shape == (2, 8, 8, 3) and float(jnp.abs(out).max()) < 1e-3
  with pytest.raises(Exception, match="dropout"):
    model.apply({"params": params}, x, t, train=True)
  assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))
  assert float(jnp.abs(grads["conv_out"]["kernel"]).max()) > 1e-3


def test_timestep_embedding_closed_form():
  t = jnp.array([0.0, 5.0])
  emb = timestep_embedding(t, 8)  # cos first; freqs 10000 ** (-k / 4)
  freqs = np.array([10000.0 ** (-k / 4) for k in range(4)])
  expected = np.concatenate([np.cos(np.outer([0, 5], freqs)), np.sin(np.outer([0, 5], freqs))], -1)
  np.testing.assert_allclose(emb, expected, rtol=1e-6, atol=1e-6)
  # DDPM's original variant: sin first, frequency shift 1 (freqs 10000 ** (-k / 3)).
  emb = timestep_embedding(jnp.array([5]), 8, flip_sin_to_cos=False, downscale_freq_shift=1)
  np.testing.assert_allclose(emb[0, 1], math.sin(5 * 10000.0 ** (-1 / 3)), rtol=1e-6)
  # Integer and float timesteps give the same embedding.
  np.testing.assert_array_equal(timestep_embedding(jnp.array([3, 999]), 128),
                                timestep_embedding(jnp.array([3.0, 999.0]), 128))


def test_config_and_input_errors():
  cfg = ml_collections.ConfigDict(dict(ch=128, ch_mult=[1, 2, 2, 2], num_res_blocks=2,
                                       attn_resolutions=[16], dropout=0.1, dtype="bfloat16"))
  model = unet_from_config(cfg, image_channels=1, num_classes=10)
  assert (model.ch_mult, model.attn_resolutions, model.dtype) == ((1, 2, 2, 2), (16,), jnp.bfloat16)
  assert (model.out_channels, model.num_classes, model.num_groups) == (1, 10, 32)
  cfg.dtype = "float16"
  with pytest.raises(ValueError, match="float16"):
    unet_from_config(cfg, 3, 0)
  small = UNet(ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), num_groups=4)
  init = lambda m, x, y=None: m.init(jax.random.key(0), x, jnp.zeros(x.shape[0]), y,  # noqa: E731
                                     train=False)
  with pytest.raises(ValueError, match="not divisible by 2"):
    init(small, jnp.zeros((1, 7, 7, 3)))
  with pytest.raises(ValueError, match="unconditional"):
    init(small, jnp.zeros((1, 8, 8, 3)), jnp.zeros((1,), jnp.int32))
  with pytest.raises(ValueError, match="num_groups=3"):
    init(UNet(ch=8, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(), num_groups=3),
         jnp.zeros((1, 8, 8, 3)))


def test_group_norm_gradient_equals_autodiff():
  """The hand-written GroupNorm(+SiLU) backward equals autodiff of the same forward."""
  from jaxgen.nn.blocks import _group_norm_fwd, group_norm
  k = jax.random.split(jax.random.PRNGKey(0), 4)
  x = jax.random.normal(k[0], (2, 8, 8, 64)) * 3 + 1
  scale, bias = jax.random.normal(k[1], (64,)), jax.random.normal(k[2], (64,))
  w = jax.random.normal(k[3], x.shape)
  for act in (False, True):
    ref = jax.grad(lambda *a: jnp.sum(_group_norm_fwd(*a, 32, 1e-5, act)[0] * w), (0, 1, 2))(x, scale, bias)
    got = jax.grad(lambda *a: jnp.sum(group_norm(*a, 32, 1e-5, act) * w), (0, 1, 2))(x, scale, bias)
    for r, g in zip(ref, got):
      np.testing.assert_allclose(g, r, atol=1e-5 * float(jnp.max(jnp.abs(r))))


def test_dropout_keep_rate_and_scaling():
  from jaxgen.nn.blocks import dropout
  x = jnp.ones((64, 32, 32, 16))
  y = dropout(x, 0.1, jax.random.PRNGKey(0))
  kept = np.asarray(y != 0)
  n = kept.size
  assert abs(kept.mean() - 0.9) < 4 * np.sqrt(0.09 / n)          # Bernoulli(0.9) within 4 sigma
  np.testing.assert_allclose(np.asarray(y)[kept], 1 / 0.9, rtol=1e-6)   # inverted scaling
  assert not np.array_equal(kept, np.asarray(dropout(x, 0.1, jax.random.PRNGKey(1)) != 0))


def test_dropout_keep_rate_and_independence():
  """Two 16-bit draws per 32-bit word: keep rate 1 - rate, scaled by 1 / (1 - rate), and the two
  halves of a word (neighbouring elements) independent; odd sizes work."""
  from jaxgen.nn.blocks import dropout
  x = jnp.ones((16, 32, 32, 65))
  y = np.asarray(jax.jit(lambda k: dropout(x, 0.1, k))(jax.random.key(0, impl="rbg")))
  assert set(np.unique(y)) == {0.0, np.float32(1 / 0.9)}
  keep = (y > 0).reshape(-1)
  n = keep.size
  assert abs(keep.mean() - 0.9) < 4 * np.sqrt(0.09 / n)
  even, odd = keep[0:n - 1:2], keep[1::2]
  both = np.mean(even & odd)
  assert abs(both - 0.81) < 4 * np.sqrt(0.81 * 0.19 / even.size)
  other = np.asarray(jax.jit(lambda k: dropout(x, 0.1, k))(jax.random.key(1, impl="rbg")))
  assert np.mean((y > 0) == (other > 0)) < 0.9 * 0.9 + 0.1 * 0.1 + 0.01
