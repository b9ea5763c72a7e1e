"""CLIP (jaxgen.methods.clip, configs/clip, jaxgen.metrics.contrastive): the global-batch loss on the
2 test devices equals the single-device loss (values and gradients), its closed forms, the
temperature clamp, which leaves get weight decay (open_clip's rule), config errors, the metric
arithmetic on hand-built embeddings, and a learning check on the shapes captions read through the
zero-shot and retrieval evaluators."""
import math
import pathlib
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxgen import config_check, optim, parallel, train
from jaxgen.configs import load_config_file
from jaxgen.data import shapes
from jaxgen.errors import ConfigError
from jaxgen.evaluators import Context
from jaxgen.methods import clip
from jaxgen.metrics import contrastive as C

REPO = pathlib.Path(__file__).resolve().parents[1]
SHAPES = str(REPO / "configs/clip/shapes.py")
MNIST = str(REPO / "configs/clip/mnist.py")


def _mesh():
  return parallel.create_mesh(ml_collections.ConfigDict(dict(data=-1, fsdp=1, model=1)))


# ----------------------------------------------------------------------------------------- loss
def test_global_batch_loss_and_gradients_equal_the_single_device_loss():
  assert jax.device_count() == 2
  mesh = _mesh()
  rng = np.random.default_rng(0)
  img, txt = (jnp.asarray(rng.normal(size=(8, 6)), jnp.float32) for _ in range(2))
  t = jnp.float32(1.7)
  def grad_fn(m):
    f = lambda a, b, t: clip.contrastive_loss(a, b, t, m)   # noqa: E731
    return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))
  sharded = parallel.batch_sharding(mesh)
  (l1, aux1), g1 = grad_fn(None)(img, txt, t)
  (l2, aux2), g2 = grad_fn(mesh)(jax.device_put(img, sharded), jax.device_put(txt, sharded), t)
  # The plain loss written out independently: exp(t) cos-sim logits, CE both ways.
  a = img / jnp.linalg.norm(img, axis=1, keepdims=True)
  b = txt / jnp.linalg.norm(txt, axis=1, keepdims=True)
  logits = np.exp(1.7) * np.asarray(a @ b.T, np.float64)
  lse = lambda x: np.log(np.sum(np.exp(x - x.max(1, keepdims=True)), 1)) + x.max(1)  # noqa: E731
  want = np.mean((lse(logits) - np.diag(logits) + lse(logits.T) - np.diag(logits)) / 2)
  np.testing.assert_allclose(l1, want, rtol=1e-5)
  np.testing.assert_allclose(l2, l1, rtol=1e-6)
  for x, y in zip(g1, g2):
    np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=1e-5, atol=1e-7)
  for k in aux1:
    assert float(aux1[k]) == float(aux2[k])


def test_loss_closed_forms():
  n = 16
  same = jnp.ones((n, 4))                                   # every logit equal: exactly log(B)
  np.testing.assert_allclose(clip.contrastive_loss(same, same, jnp.float32(2.0))[0], math.log(n),
                             rtol=1e-6)
  eye = jnp.eye(n)                                          # aligned, orthogonal: ~0 at scale 100
  loss, aux = clip.contrastive_loss(eye, eye, jnp.float32(math.log(100)))
  assert float(loss) < 1e-30 + n * math.exp(-100) and aux["image_to_text_acc"] == 1.0
  # Random features at scale 1: the expectation is ~log(B) (logits in [-1, 1]).
  rng = np.random.default_rng(1)
  loss = clip.contrastive_loss(*(jnp.asarray(rng.normal(size=(256, 64))) for _ in range(2)),
                               jnp.float32(0.0))[0]
  assert abs(float(loss) - math.log(256)) < 0.05


# ----------------------------------------------------------------------------------------- method
def _tiny_config(**overrides) -> ml_collections.ConfigDict:
  c = load_config_file(SHAPES + ":tiny")
  for k, v in overrides.items():
    section, key = k.split(".")
    c[section][key] = v
  return c


def _state_and_step(c):
  mesh = parallel.create_mesh(c.mesh)
  method = config_check.validate(c)
  from jaxgen import data
  example = data.example_batch(c.data, c.train.batch_size)
  init_fn, _, shardings = train.create_state(method, c, mesh, example)
  state = init_fn(train.root_key(c), parallel.global_batch(example, mesh))
  return method, mesh, state, train.compile_train_step(method, c, mesh, shardings)


def _shapes_batch(index, mesh, split="train", max_len=40):
  ex = shapes.draw(np.asarray(index), split, 32, max_len)
  return parallel.global_batch({"image": ex["image"].astype(np.float32) / 127.5 - 1,
                                "caption_tokens": ex["caption_tokens"]}, mesh)


@pytest.mark.parametrize("spec", ["shapes.py:tiny", "rn50.py:tiny", "vit_b32.py", "rn50.py"])
def test_no_weight_decay_on_open_clips_excluded_leaves(spec):
  """open_clip's exclude rule: p.ndim < 2 or 'bn' / 'ln' / 'bias' / 'logit_scale' in the name."""
  from jaxgen.models import clip as models
  c = load_config_file(str(REPO / "configs/clip" / spec))
  params = models.abstract_variables(c.model)["params"]
  labels = optim.param_labels(params, c.optim)
  optim.check_rules(params, c.optim)
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  label_of = dict(jax.tree_util.tree_flatten_with_path(labels)[0])
  for path, leaf in flat:
    name = optim.path_str(path)
    excluded = (leaf.ndim < 2 or "bias" in name or "logit_scale" in name
                or any(p.startswith(("bn", "ln")) for p in name.split("/")))
    assert ("decay=off" in label_of[path]) == excluded, name


@pytest.mark.parametrize("overrides,match", [
    ({"model.vision_patch_size": 5}, "not divisible by config.model.vision_patch_size=5"),
    ({"model.context_length": 20}, "context_length=20 is shorter"),
    ({"model.vocab_size": 100}, "vocab_size=100 is smaller than the tokenizer's 257"),
    ({"data.image_size": 64}, "image_size=64 != config.model.image_resolution=32"),
    ({"data.source": "folder"}, "gives no captions"),
    ({"train.ema_decay": 0.999}, "keeps no EMA"),
])
def test_config_errors(overrides, match):
  with pytest.raises(ConfigError, match=match):
    config_check.validate(_tiny_config(**overrides))


def test_clip_evaluators_need_an_embedding_method():
  c = load_config_file(str(REPO / "configs/diffusion/shapes.py:tiny"))
  c.eval.evaluators = ("zero_shot",)
  with pytest.raises(ConfigError, match="needs image and text embeddings"):
    config_check.validate(c)


# ----------------------------------------------------------------------------------------- metrics
def test_zero_shot_arithmetic_on_hand_built_embeddings():
  # Two templates per class; class 0's embeddings average to +x, class 1's to +y, class 2's to -x-y.
  prompts = np.array([[[1, 0.2], [1, -0.2]], [[0.1, 1], [-0.1, 1]], [[-1, -0.9], [-0.9, -1]]])
  weights = C.class_embeddings(prompts)
  np.testing.assert_allclose(weights[:2], [[1, 0], [0, 1]], atol=1e-12)
  np.testing.assert_allclose(weights[2], -np.ones(2) / np.sqrt(2))
  images = np.array([[2, 0.1], [0.1, 3], [-1, -1], [1, 0.9], [-0.1, 1]])
  # Rows 3 and 4 are wrong at top-1 and right at top-2: row 3 cos (0.74, 0.67, -1.0), label 1;
  # row 4 cos (-0.10, 0.99, -0.63), label 0.
  labels = np.array([0, 1, 2, 1, 0])
  acc = C.zero_shot_accuracy(images, weights, labels, ks=(1, 2))
  assert acc == {"top1": 0.6, "top2": 1.0}
  assert C.zero_shot_accuracy(images, weights, np.array([2, 2, 1, 2, 2]), ks=(1, 2))["top2"] == 0.0


def test_retrieval_recall_with_repeated_captions():
  img = np.eye(4)
  txt = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0.9, 0.1]], float)
  r = C.retrieval_recall(img, txt, ks=(1, 2))
  # image 0 -> text 1 first (wrong), then the tied zeros in order (text 0); image 1 -> text 0
  # (wrong), then text 1; 2 -> 2; 3 -> 3.
  assert r["image_to_text_r@1"] == 0.5 and r["image_to_text_r@2"] == 1.0
  # Captions 0 and 1 equal: each counts for the other.
  r = C.retrieval_recall(img, txt, captions=np.array(["a", "a", "b", "c"]), ks=(1,))
  assert r["image_to_text_r@1"] == 1.0 and r["text_to_image_r@1"] == 0.75


def test_clip_score_values():
  img = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
  txt = np.array([[1.0, 1.0], [-1.0, 0.0], [0.0, 5.0]])   # cos = 1/sqrt2, -1 (-> 0), 1
  s = C.clip_score(img, txt)
  np.testing.assert_allclose(s["clip_score"], 2.5 * (2 ** -0.5 + 0 + 1) / 3)
  np.testing.assert_allclose(s["clip_score_100"], 100 * (2 ** -0.5 + 1) / 3)


# ----------------------------------------------------------------------------------------- learning
@pytest.fixture(scope="module")
def trained():
  """A tiny ViT CLIP (configs/clip/shapes.py at lr 3e-3), 100 steps of 64 shapes captions on the 2
  devices: (config, method, mesh, state, compiled step, {"init_logit_scale", "loss", "train_s"})."""
  c = load_config_file(SHAPES + ":steps=100")
  c.optim.lr = 3e-3
  c.eval.num_examples = 400
  c.eval.batch_size = 200
  method, mesh, state, step = _state_and_step(c)
  info = {"init_logit_scale": float(state.params["logit_scale"])}
  t0 = time.time()
  for i in range(c.train.num_steps):
    state, metrics = step(state, _shapes_batch(np.arange(i * 64, (i + 1) * 64), mesh))
  info.update(loss=float(metrics["loss"]), train_s=time.time() - t0)
  return c, method, mesh, state, step, info


def test_learning_check_zero_shot_and_retrieval_on_shapes(trained):
  """Zero-shot accuracy on 400 held-out test images (classes 'red circle', ..., 'blue cross', one
  template per background, averaged) and image <-> caption retrieval through the evaluators.

  What so short a run learns is the colour (and the background), not yet the shape: the loss
  settles near log(64 / 6) = 2.37, the in-batch ambiguity left when each of the 6 colour x background
  groups is told apart, and zero-shot top-5 (the 5 shapes of the right colour) is 1.0. Measured here
  (100 steps at lr 3e-3, 150 at 1e-3): top-1 0.20-0.21 (chance 0.10; 60 steps: 0.17), top-5 1.0
  (chance 0.5; 60 steps: 0.98); text -> image recall@5 ~ 0.77 over 400 images (with repeated
  captions: ~7 correct images per caption, chance ~ 0.08)."""
  c, method, mesh, state, _, info = trained
  ctx = Context(method=method, config=c, state=state, mesh=mesh, seed_key=jax.random.PRNGKey(0))
  zs = C.ZeroShot(c)(ctx)
  ret = C.Retrieval(c)(ctx)
  print(info, zs, ret)
  assert zs["zero_shot_top1"] > 0.15, zs   # chance 0.10
  assert zs["zero_shot_top5"] > 0.9, zs    # chance 0.50
  assert ret["text_to_image_r@5"] > 0.4, ret


def test_clip_score_of_matching_captions_beats_shuffled_ones(trained):
  """CLIPScore with the trained CLIP as the frozen part: shapes test images scored against their own
  captions vs the captions of other images of a different colour."""
  c, method, mesh, state, _, _ = trained
  ex = shapes.draw(np.arange(64), "test", 32, 40)
  images = ex["image"].astype(np.float32) / 127.5 - 1
  colour = ex["label"] % 2
  red, blue = np.flatnonzero(colour == 0), np.flatnonzero(colour == 1)
  other = np.array([blue[i % len(blue)] if colour[i] == 0 else red[i % len(red)] for i in range(64)])

  class Ctx:
    def __init__(self, tokens):
      self.state, self.mesh, self.tokens = state.replace(frozen={"clip": state.params}), mesh, tokens
    def generate(self, num, name):
      return images[:num], {"caption_tokens": self.tokens[:num]}

  c = c.copy_and_resolve_references()
  c.eval.clip_model = c.model
  c.eval.num_samples = 64
  matched = C.CLIPScore(c)(Ctx(ex["caption_tokens"]))
  shuffled = C.CLIPScore(c)(Ctx(ex["caption_tokens"][other]))
  print(matched, shuffled)
  assert matched["clip_score"] > shuffled["clip_score"] + 0.1, (matched, shuffled)
  assert matched["clip_score_100"] == pytest.approx(matched["clip_score"] * 40, rel=1e-6)


def test_temperature_starts_at_1_over_0_07_and_is_clamped_at_100(trained):
  c, method, mesh, state, step, info = trained
  assert info["init_logit_scale"] == pytest.approx(math.log(1 / 0.07), rel=1e-6)
  # Scale e^5 = 148 (with the sharding the compiled step expects). The step donates the fixture's
  # state: this test runs last.
  five = jax.device_put(jnp.float32(5.0), state.params["logit_scale"].sharding)
  state = state.replace(params={**state.params, "logit_scale": five})
  state, metrics = step(state, _shapes_batch(np.arange(64), mesh))
  assert float(state.params["logit_scale"]) == pytest.approx(math.log(100), rel=1e-6)
  assert float(metrics["logit_scale"]) == pytest.approx(100, rel=1e-5)


def test_learning_check_zero_shot_on_real_mnist(mnist_numpy, tmp_path):
  """configs/clip/mnist.py (the tiny ViT CLIP, captions 'a photo of the number: "7".' made from the
  labels; lr 1e-3, 5-step warm-up, cosine) trained through the loop for 100 steps of 64 real MNIST
  training images, then `--mode eval`'s zero-shot evaluator (CLIP's MNIST prompt) on 640 held-out
  test images: top-1 must beat chance (0.10) by 0.2. Measured here: loss log(64) = 4.16 -> 3.40
  (the floor with ~6 same-caption images per batch is ~log(6.4) = 1.86), zero-shot top-1 0.445,
  top-5 0.91 (0.54 / 0.93 on training images). At lr 3e-3 this config collapses (loss stays at
  log(64), top-1 0.12)."""
  from jaxgen import data as D
  from jaxgen import main
  images, labels = mnist_numpy["train"]
  D.register_arrays("mnist", images[:6400], labels[:6400])
  c = load_config_file(MNIST + ":steps=100")
  c.data.update(dict(source="arrays", name="mnist"))
  t0 = time.time()
  main.run(c, str(tmp_path), "train")
  train_s = time.time() - t0
  images, labels = mnist_numpy["test"]
  D.register_arrays("mnist", images[:640], labels[:640])   # the eval split: held-out test images
  got = main.run(c, str(tmp_path), "eval")
  print(f"train {train_s:.0f} s, eval {time.time() - t0 - train_s:.0f} s:", got)
  assert got["zero_shot_top1"] > 0.3, got
