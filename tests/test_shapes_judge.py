"""The shapes judge (jaxgen/data/shapes_judge.py): accurate on real shapes, blind to nothing (labels
that do not match the images score at chance), cached, and its evaluator's config checks."""
import pathlib

import numpy as np
import pytest

from jaxgen import evaluators
from jaxgen.configs import load_config_file
from jaxgen.data import shapes_judge
from jaxgen.errors import ConfigError

# A narrow judge at a small size trains in seconds and still clears 99 % on real test images.
SIZE, STEPS, WIDTH = 24, 400, 16
REPO_CONFIG = str(pathlib.Path(__file__).resolve().parents[1] / "configs/diffusion/shapes.py")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
  return tmp_path_factory.mktemp("jaxgen_cache")


@pytest.fixture
def judge(cache, monkeypatch):
  monkeypatch.setenv("JAXGEN_CACHE", str(cache))
  return shapes_judge.load_or_train(SIZE, steps=STEPS, width=WIDTH)


def _real_test(n=500):
  return shapes_judge.real_images(np.arange(n), "test", SIZE)


def test_judge_accurate_on_real_test_images_and_cached(judge, cache, monkeypatch):
  x, y = _real_test()
  res = shapes_judge.agreement(judge, x, y)
  assert res["shape_agreement"] >= 0.99 and res["colour_agreement"] >= 0.99, res
  assert res["class_agreement"] >= 0.99, res
  # Trained once: the cache file exists, and loading it gives the same params (no retraining).
  path = shapes_judge.cache_path(SIZE, steps=STEPS, width=WIDTH)
  assert path.parent == cache and path.is_file()
  monkeypatch.setattr(shapes_judge, "train", lambda *a, **k: pytest.fail("retrained despite cache"))
  again = shapes_judge.load_or_train(SIZE, steps=STEPS, width=WIDTH)
  np.testing.assert_array_equal(again["Conv_0"]["kernel"], judge["Conv_0"]["kernel"])


def test_mismatched_labels_score_at_chance(judge):
  x, y = _real_test()
  # Each image is asked for the label of the next one (independent draws): chance is 0.2 for the
  # shape, 0.5 for the colour and 0.1 for both.
  res = shapes_judge.agreement(judge, x, np.roll(y, 1))
  assert res["shape_agreement"] < 0.3, res
  assert 0.4 < res["colour_agreement"] < 0.6, res
  assert res["class_agreement"] < 0.17, res
  # Swapping only the colour (label xor 1) keeps every shape right and no colour.
  res = shapes_judge.agreement(judge, x, y ^ 1)
  assert res["shape_agreement"] >= 0.99 and res["colour_agreement"] <= 0.01, res


class _RealImagesContext:
  """Stands in for evaluators.Context: "generates" real test images of the requested labels."""

  def __init__(self, shift=0):
    self.shift = shift

  def generate(self, num, name):
    assert name == "shapes_agreement"
    x, y = shapes_judge.real_images(np.arange(num), "test", SIZE)
    return x, {"label": (y + self.shift) % 10}


def test_evaluator_judges_generated_samples_against_their_labels(cache, monkeypatch, judge):
  monkeypatch.setattr(shapes_judge, "DEFAULT_WIDTH", WIDTH)   # reuse the cached narrow judge
  c = load_config_file(REPO_CONFIG + ":tiny")
  c.eval.judge_num_samples, c.eval.judge_steps = 200, STEPS
  evaluator = evaluators.create("shapes_agreement", c)
  assert isinstance(evaluator, shapes_judge.ShapesAgreement)
  evaluator.validate()
  assert evaluator(_RealImagesContext())["class_agreement"] >= 0.99
  res = evaluator(_RealImagesContext(shift=2))   # same colour, the next shape
  assert res["colour_agreement"] >= 0.99 and res["shape_agreement"] <= 0.01, res


def test_validate_rejects_configs_it_cannot_judge():
  c = load_config_file(REPO_CONFIG + ":tiny")
  assert "shapes_agreement" in c.eval.evaluators and "judge_num_samples" in c.eval
  evaluators.validate(c, can_sample=True)   # the main job's own config passes
  bad = c.copy_and_resolve_references()
  bad.data.source = "tfds"
  with pytest.raises(ConfigError, match=r"data.source='tfds'.*remove it or set config.data.source='shapes'"):
    evaluators.validate(bad, can_sample=True)
  bad = c.copy_and_resolve_references()
  bad.data.num_classes = 0
  with pytest.raises(ConfigError, match=r"num_classes=0.*set data.num_classes=10"):
    evaluators.validate(bad, can_sample=True)
  bad = c.copy_and_resolve_references()
  bad.diffusion.class_conditional = False
  with pytest.raises(ConfigError, match=r"class_conditional=False"):
    evaluators.validate(bad, can_sample=True)
