"""Tests for the data the later families need: named streams (CycleGAN), class subsets, bicubic
low-resolution pairs and random crops (SRGAN), source="none" (style transfer), float arrays (latents).

Kept small (registered arrays and the embedded shapes source); real data only for the CIFAR-10
cat/dog streams (the lossless cifar10_tiny through TFDS) and the captions stream.
"""
import itertools
import json
import pathlib
import subprocess
import sys
import tarfile
import time

import numpy as np
import pytest
from PIL import Image

import jaxgen.data as D
from jaxgen.data import order
from jaxgen.data import prepare
from jaxgen.data import shapes
from jaxgen.data import text
from jaxgen.errors import ConfigError
from test_data import _cfg, _take

REPO = pathlib.Path(__file__).resolve().parents[1]


def _to_uint8(x):
  return np.round((x + 1) * 127.5).astype(np.uint8)




def _train(cfg, bs, seed=0, start=0, steps=1, p=0, count=1):
  return _take(D.train_iterator(cfg, global_batch_size=bs, seed=seed, start_step=start,
                                process_index=p, process_count=count), steps)


def _eval(cfg, bs, p=0, count=1, **kw):
  return list(D.eval_iterator(cfg, global_batch_size=bs, process_index=p, process_count=count, **kw))


def _assert_same(a, b):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _signature(batch):
  return {k: (v.shape, v.dtype) for k, v in batch.items()}


def _register_idx(name="streams_idx", n=20, size=6, channels=1):
  """Random images whose label is their index, so batches reveal which rows they hold."""
  images = np.random.default_rng(1).integers(0, 256, (n, size, size, channels), dtype=np.uint8)
  D.register_arrays(name, images, np.arange(n))
  return images


def test_streams_have_independent_reproducible_resumable_sliced_orders():
  images = _register_idx()
  bs, steps, seed = 8, 5, 3
  # Stream b: the first 13 examples only, so its epochs (13) and a's (20) cycle independently;
  # c is configured exactly as a, and must still be shuffled differently.
  cfg = _cfg(source="arrays", name="streams_idx", image_size=6, channels=1, num_classes=20,
             streams=dict(a=dict(), b=dict(num_train_examples=13, random_flip=True), c=dict()))
  ref = _train(cfg, bs, seed=seed, steps=steps)
  assert set(ref[0]) == {f"{s}/{k}" for s in "abc" for k in ("image", "label")}
  assert _signature(ref[0]) == _signature(D.example_batch(cfg, bs))
  for name, n in (("a", 20), ("b", 13)):
    labels = np.concatenate([b[f"{name}/label"] for b in ref])
    s = order.stream_seed(seed, name)
    expected = np.concatenate([np.random.default_rng([s, e]).permutation(n) for e in range(4)])
    np.testing.assert_array_equal(labels, expected[:steps * bs])
  a, c = (np.concatenate([x[f"{k}/label"] for x in ref]) for k in "ac")
  assert not np.array_equal(a, c), "identically configured streams must be shuffled independently"
  assert sorted(a[:20]) == sorted(c[:20]) == list(range(20))
  # Images are their examples (b flipped or not; a never flipped, flips are per stream).
  flips = []
  for x in ref:
    for img, label in zip(x["a/image"], x["a/label"]):
      np.testing.assert_array_equal(img, images[label] / np.float32(127.5) - 1)
    for img, label in zip(x["b/image"], x["b/label"]):
      orig = images[label] / np.float32(127.5) - 1
      flips.append(np.array_equal(img, orig[:, ::-1]))
      assert flips[-1] or np.array_equal(img, orig)
  assert 0 < np.mean(flips) < 1
  for x, y in zip(ref, _train(cfg, bs, seed=seed, steps=steps)):
    _assert_same(x, y)
  # Resume anywhere (step 1 crosses b's epoch boundary at 13, step 2 a's at 20).
  for k in (1, 2, 4):
    for x, y in zip(ref[k:], _train(cfg, bs, seed=seed, start=k, steps=steps - k)):
      _assert_same(x, y)
  # Two processes' local batches concatenate to the one-process batch, for every stream.
  halves = [_train(cfg, bs, seed=seed, steps=steps, p=p, count=2) for p in range(2)]
  for g, h0, h1 in zip(ref, *halves):
    assert h0["a/image"].shape[0] == bs // 2
    _assert_same(g, {k: np.concatenate([h0[k], h1[k]]) for k in g})
  assert D.num_examples(cfg, "train") == 13  # the smallest stream
  assert D.num_examples(cfg, "train", stream="a") == 20


def test_stream_eval_pads_to_the_longest_with_per_stream_masks():
  _register_idx()
  cfg = _cfg(source="arrays", name="streams_idx", image_size=6, channels=1, num_classes=20,
             streams=dict(a=dict(classes=(2, 3, 5)), b=dict()))
  per_process = [_eval(cfg, 8, p=p, count=2) for p in range(2)]
  assert [len(x) for x in per_process] == [3, 3]  # ceil(20 / 8): the longest stream
  cat = {k: np.concatenate([np.concatenate([x[k], y[k]]) for x, y in zip(*per_process)])
         for k in per_process[0][0]}
  np.testing.assert_array_equal(cat["a/mask"], [1] * 3 + [0] * 21)
  np.testing.assert_array_equal(cat["b/mask"], [1] * 20 + [0] * 4)
  np.testing.assert_array_equal(cat["mask"], cat["b/mask"])  # any stream real
  np.testing.assert_array_equal(cat["a/label"][:3], [2, 3, 5])
  np.testing.assert_array_equal(cat["b/label"][:20], np.arange(20))


def test_cifar10_cat_and_dog_streams_from_tfds(tmp_path, shared_datasets):
  """Two streams of one real dataset (the lossless first 200 CIFAR-10 train images, through TFDS's
  own cifar10 builder) hold exactly the official cats (3) and dogs (5)."""
  tiny = shared_datasets / "cifar10_tiny"
  official = {3: set(), 5: set()}
  with tarfile.open(tiny / "cifar-10-binary.tar.gz") as tar:
    for i in range(1, 6):
      data = np.frombuffer(tar.extractfile(f"cifar-10-batches-bin/data_batch_{i}.bin").read(),
                           np.uint8).reshape(-1, 3073)
      for rec in data:
        if rec[0] in official:
          official[rec[0]].add(rec[1:].reshape(3, 32, 32).transpose(1, 2, 0).tobytes())
  prepare.main(["cifar10", "--manual_dir", str(tiny), "--data_dir", str(tmp_path)])
  cfg = _cfg(source="tfds", name="cifar10", data_dir=str(tmp_path), num_classes=10,
             streams=dict(cat=dict(classes=(3,)), dog=dict(classes=(5,))))
  D.validate(cfg)
  counts = {c: D.num_examples(cfg, "train", stream=s) for s, c in (("cat", 3), ("dog", 5))}
  assert counts == {c: len(v) for c, v in official.items()} and min(counts.values()) > 5
  batches = _eval(cfg, 16, split="train")
  assert len(batches) == -(-max(counts.values()) // 16)
  for name, c in (("cat", 3), ("dog", 5)):
    mask = np.concatenate([b[f"{name}/mask"] for b in batches]) > 0
    images = np.concatenate([b[f"{name}/image"] for b in batches])[mask]
    np.testing.assert_array_equal(np.concatenate([b[f"{name}/label"] for b in batches])[mask], c)
    seen = [_to_uint8(x).tobytes() for x in images]
    assert len(seen) == len(set(seen)) and set(seen) == official[c]  # pixel-exact, each once
  train = _train(cfg, 8, seed=0)[0]
  assert set(train["cat/label"]) == {3} and set(train["dog/label"]) == {5}
  with pytest.raises(ConfigError, match=r"data.classes=\(10,\).*\[0, 10\)"):
    D.validate(_cfg(source="tfds", name="cifar10", data_dir=str(tmp_path), classes=(10,)))


def test_captions_and_shapes_streams_keep_caption_tokens(shared_datasets):
  path = shared_datasets / "skimage_captions"
  with open(path / "captions.jsonl") as f:
    captions = [json.loads(line)["caption"] for line in f]
  cfg = _cfg(image_size=16, caption_max_len=40,
             streams=dict(photo=dict(source="captions", path=str(path)),
                          shape=dict(classes=(1,), num_classes=10, remap_classes=True)))
  D.validate(cfg)
  (b,) = _eval(cfg, 8, num_examples=8)
  assert text.detokenize(b["photo/caption_tokens"]) == [c.encode()[:40].decode() for c in captions]
  assert all(c.startswith("a blue circle on a ") for c in text.detokenize(b["shape/caption_tokens"]))
  np.testing.assert_array_equal(b["shape/label"], 0)  # class 1 remapped to 0
  train = _train(cfg, 4)[0]
  assert _signature(train) == _signature(D.example_batch(cfg, 4))
  assert "photo/label" not in train and train["photo/caption_tokens"].shape == (4, 40)


def test_class_filter_keeps_only_those_classes(tmp_path):
  # shapes: the eval pass is exactly the split's examples of those classes, in index order.
  cfg = _cfg(num_classes=10, classes=(5, 3))
  (b,) = _eval(cfg, 32, num_examples=32)
  want = np.flatnonzero(np.isin(shapes.params(np.arange(400), "test")["label"], (3, 5)))[:32]
  np.testing.assert_array_equal(b["label"], shapes.params(want, "test")["label"])
  drawn = shapes.draw(want, "test", 32, 64)
  np.testing.assert_array_equal(b["image"], drawn["image"] / np.float32(127.5) - 1)
  np.testing.assert_array_equal(b["caption_tokens"], drawn["caption_tokens"])
  # remap_classes: positions in data.classes (5 -> 0, 3 -> 1), and num_classes may shrink to 2.
  (r,) = _eval(_cfg(num_classes=2, classes=(5, 3), remap_classes=True), 32, num_examples=32)
  np.testing.assert_array_equal(r["label"], np.where(b["label"] == 5, 0, 1))
  train = np.concatenate([x["label"] for x in _train(cfg, 64, steps=2)])
  assert set(train) == {3, 5}
  with pytest.raises(ConfigError, match="num_classes=2 is smaller"):
    D.validate(_cfg(num_classes=2, classes=(5, 3)))  # without remapping labels stay 3 and 5
  # arrays: labels = indices, so the kept rows are visible.
  _register_idx()
  acfg = _cfg(source="arrays", name="streams_idx", image_size=6, channels=1, num_classes=20,
              classes=(4, 7, 11), num_train_examples=2)
  assert D.num_examples(acfg, "train") == 2 and D.num_examples(acfg, "test") == 3
  assert set(np.concatenate([x["label"] for x in _train(acfg, 5, steps=2)])) == {4, 7}
  # folder: class folders sorted (a=0, b=1, c=2); keep b.
  for c, split in itertools.product("abc", ("train", "test")):
    (tmp_path / split / c).mkdir(parents=True)
    for i in range(2):
      Image.fromarray(np.full((4, 4, 3), 40 * i + 80 * "abc".index(c), np.uint8)).save(
          tmp_path / split / c / f"{i}.png")
  fcfg = _cfg(source="folder", path=str(tmp_path), image_size=4, num_classes=3, classes=(1,))
  (f,) = _eval(fcfg, 4)
  np.testing.assert_array_equal(f["mask"], [1, 1, 0, 0])
  np.testing.assert_array_equal(f["label"][:2], 1)
  np.testing.assert_array_equal(_to_uint8(f["image"][:2])[:, 0, 0, 0], [80, 120])


def test_low_res_is_bicubic_of_the_image():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  for crop, low in ((0, 8), (16, 4)):
    cfg = _cfg(image_size=32, random_flip=True, random_crop=crop,
               degrade=dict(kind="bicubic", factor=4))
    b = _train(cfg, 8)[0]
    assert b["image"].shape == (8, 4 * low, 4 * low, 3) and b["low_res"].shape == (8, low, low, 3)
    assert _signature(b) == _signature(D.example_batch(cfg, 8))
    ref = tf.clip_by_value(tf.image.resize(b["image"], [low, low], method="bicubic", antialias=True),
                           -1, 1).numpy()
    np.testing.assert_allclose(b["low_res"], ref, atol=1e-6)
    naive = b["image"][:, ::4, ::4]  # plain subsampling differs (antialiasing)
    assert np.abs(b["low_res"] - naive).max() > 0.05
  (e,) = _eval(cfg, 8, num_examples=8)
  assert e["low_res"].shape == (8, 4, 4, 3) and e["image"].shape == (8, 16, 16, 3)


def test_random_crops_are_deterministic_and_vary_with_position():
  images = _register_idx(size=10, channels=3)
  cfg = _cfg(source="arrays", name="streams_idx", image_size=10, num_classes=20, random_crop=6)
  assert D.example_batch(cfg, 8)["image"].shape == (8, 6, 6, 3)

  def offsets(batches):
    out = []
    for b in batches:
      for img, label in zip(b["image"], b["label"]):
        full = images[label] / np.float32(127.5) - 1
        hits = [(y, x) for y in range(5) for x in range(5)
                if np.array_equal(img, full[y:y + 6, x:x + 6])]
        assert len(hits) == 1, hits
        out.append(hits[0])
    return out

  ref = _train(cfg, 8, steps=3)
  pos = offsets(ref)
  assert len(set(pos)) > 5, "crop offsets must vary with the stream position"
  assert offsets(_train(cfg, 8, steps=3)) == pos
  assert offsets(_train(cfg, 8, start=1, steps=2)) == pos[8:]
  halves = [offsets(_train(cfg, 8, steps=3, p=p, count=2)) for p in range(2)]
  assert [o for s in range(3) for h in halves for o in h[4 * s:4 * s + 4]] == pos
  assert offsets(_train(cfg, 8, seed=1, steps=3)) != pos
  assert set(offsets(_eval(cfg, 8))) == {(2, 2)}  # eval: centred


def test_source_none_gives_stream_positions():
  cfg = _cfg(source="none")
  D.validate(cfg)
  assert _signature(D.example_batch(cfg, 4)) == {"index": ((4,), np.int32)}
  ref = _train(cfg, 4, steps=4)
  np.testing.assert_array_equal(np.concatenate([b["index"] for b in ref]), np.arange(16))
  assert _signature(ref[0]) == _signature(D.example_batch(cfg, 4))
  resumed = _train(cfg, 4, start=2, steps=2, p=1, count=2)
  np.testing.assert_array_equal([b["index"] for b in resumed], [[10, 11], [14, 15]])
  assert _eval(cfg, 4) == [] and D.num_examples(cfg, "test") == 0  # num_eval_examples=0
  e = _eval(_cfg(source="none", num_eval_examples=5), 4)
  np.testing.assert_array_equal([b["index"] for b in e], [[0, 1, 2, 3], [4, 0, 0, 0]])
  np.testing.assert_array_equal([b["mask"] for b in e], [[1, 1, 1, 1], [1, 0, 0, 0]])


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_float_arrays_pass_through_bit_exact(dtype, tmp_path):
  x = (np.random.default_rng(2).standard_normal((10, 8, 8, 4)) * 3).astype(dtype)  # latents, |x| > 1
  D.register_arrays("latents", x, np.arange(10) % 3)
  np.savez(tmp_path / "latents.npz", image=x)
  for cfg in (_cfg(source="arrays", name="latents", image_size=8, channels=4, num_classes=3),
              _cfg(source="arrays", path=str(tmp_path / "latents.npz"), image_size=8, channels=4)):
    D.validate(cfg)
    (b,) = _eval(cfg, 12)
    assert b["image"].dtype == np.float32
    np.testing.assert_array_equal(b["image"][:10], x.astype(np.float32))
  t = _train(cfg, 4, steps=1)[0]
  assert _signature(t) == _signature(D.example_batch(cfg, 4)) and t["image"].shape == (4, 8, 8, 4)
  crop = _train(_cfg(source="arrays", name="latents", image_size=8, channels=4, random_crop=4), 4)
  assert crop[0]["image"].shape == (4, 4, 4, 4)


def _bad(kind):
  """Configs with one bad new value each, and what the error must say."""
  if kind.startswith("float"):
    D.register_arrays("bad_latents", np.zeros((2, 8, 8, 4), np.float32))
  if kind == "unlabelled":
    D.register_arrays("bad_unlabelled", np.zeros((2, 4, 4, 3), np.uint8))
  return {
      "stream_key": (dict(streams=dict(a=dict(image_sise=8))), r"data.streams.a sets \['image_sise'\]"),
      "stream_nested": (dict(streams=dict(a=dict(streams=dict()))), r"\['streams'\]"),
      "stream_name": (dict(streams={"a/b": dict()}), "'a/b'"),
      "stream_value": (dict(streams=dict(a=dict(image_size="big"))), "data.streams.a"),
      "stream_field": (dict(streams=dict(a=dict(), b=dict(channels=2))), r"data.streams.b .*channels=2"),
      "class_range": (dict(classes=(3, 10)), r"data.classes=\(3, 10\): \[10\] not in \[0, 10\)"),
      "class_negative": (dict(classes=(-1,)), r"\[-1\] not in \[0, 10\)"),
      "class_dup": (dict(classes=(3, 3)), "distinct"),
      "unlabelled": (dict(source="arrays", name="bad_unlabelled", image_size=4, classes=(0,)),
                     "no labels"),
      "factor_size": (dict(image_size=30, degrade=dict(kind="bicubic", factor=4)),
                      "factor=4 must be a positive int dividing data.image_size=30"),
      "factor_crop": (dict(random_crop=18, degrade=dict(kind="bicubic", factor=4)),
                      "dividing data.random_crop=18"),
      "degrade_kind": (dict(degrade=dict(kind="lanczos")), "data.degrade.kind='lanczos'"),
      "crop_size": (dict(random_crop=33), r"data.random_crop=33 .*image_size=32"),
      "float": (dict(source="arrays", name="bad_latents", image_size=16, channels=4),
                "data.image_size=16 but the float arrays 'bad_latents' are 8x8.*image_size=8"),
      "float_channels": (dict(source="arrays", name="bad_latents", image_size=8, channels=3),
                         "data.channels=3 but the float arrays 'bad_latents' have 4 channels"),
      "none_eval": (dict(source="none", num_eval_examples=-1), "num_eval_examples=-1"),
      "none_labels": (dict(source="none", num_classes=3), "no labels"),
  }[kind]


@pytest.mark.parametrize("kind", ["stream_key", "stream_nested", "stream_name", "stream_value",
                                  "stream_field", "class_range", "class_negative", "class_dup",
                                  "unlabelled", "factor_size", "factor_crop", "degrade_kind",
                                  "crop_size", "float", "float_channels", "none_eval", "none_labels"])
def test_new_config_errors(kind):
  kw, match = _bad(kind)
  t = time.time()
  with pytest.raises(ConfigError, match=match):
    D.validate(_cfg(**kw))
  assert time.time() - t < 5


def test_validate_and_example_batch_stay_tf_free_with_new_features():
  code = (
      "import sys, numpy as np, jaxgen.data as D; from jaxgen.configs import base_config\n"
      "c = base_config().data; c.num_classes = 10\n"
      "c.streams.a = dict(classes=(3,), random_crop=16, degrade=dict(kind='bicubic', factor=4))\n"
      "c.streams.b = dict(source='none', num_classes=0)\n"
      "D.register_arrays('lat', np.zeros((3, 4, 4, 4), np.float16))\n"
      "c.streams.c = dict(source='arrays', name='lat', image_size=4, channels=4, num_classes=0)\n"
      "D.validate(c); D.num_examples(c, 'train'); b = D.example_batch(c, 2)\n"
      "assert sorted(b) == ['a/caption_tokens', 'a/image', 'a/label', 'a/low_res', 'b/index',"
      " 'c/image'], sorted(b)\n"
      "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n")
  subprocess.run([sys.executable, "-c", code], check=True, cwd=str(REPO))
