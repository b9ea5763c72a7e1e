"""Tests for jaxgen.data: real TFDS / folder / captions data, determinism, resume, process slicing."""
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
from jaxgen.configs import base_config
from jaxgen.data import prepare
from jaxgen.data import shapes
from jaxgen.data import text
from jaxgen.methods.base import ConfigError

REPO = pathlib.Path(__file__).resolve().parents[1]


def _cfg(**kw):
  c = base_config().data
  c.update(kw)
  return c


def _take(it, n):
  return list(itertools.islice(it, n))


def _to_uint8(x):
  return np.round((x + 1) * 127.5).astype(np.uint8)


def test_tokenizer_roundtrip_and_truncation():
  t = text.tokenize(["ab", "héllo", ""], 4)
  np.testing.assert_array_equal(t[0], [98, 99, 0, 0])  # bytes + 1, 0-padded
  assert t.dtype == np.int32 and t.shape == (3, 4)
  np.testing.assert_array_equal(t[2], 0)
  assert text.detokenize(t)[0] == "ab"
  assert text.detokenize(text.tokenize(["héllo"], 16)) == ["héllo"]
  assert text.detokenize(text.tokenize(["abcdef"], 3)) == ["abc"]


def test_import_validate_and_example_batch_are_tf_free():
  code = ("import sys, jaxgen.data as D; from jaxgen.configs import base_config; c = base_config().data; "
          "D.validate(c); D.example_batch(c, 2); D.text.tokenize(['a'], 3); "
          "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'")
  subprocess.run([sys.executable, "-c", code], check=True, cwd=str(REPO))


def test_tfds_mnist_offline_matches_idx_files(tmp_path, shared_datasets, mnist_numpy):
  n = 40
  prepare.main(["mnist", "--manual_dir", str(shared_datasets / "mnist"), "--data_dir", str(tmp_path),
                "--max_examples_per_split", str(n)])
  cfg = _cfg(source="tfds", name="mnist", data_dir=str(tmp_path), image_size=28, channels=1,
             num_classes=10)
  D.validate(cfg)
  assert D.num_examples(cfg, "train") == n
  x, y = mnist_numpy["train"]
  official = {x[i].tobytes(): y[i] for i in range(n)}
  assert len(official) == n
  # One eval pass (2 processes, padded last batch) sees the first n official examples exactly once.
  seen = []
  for p in range(2):
    for b in D.eval_iterator(cfg, global_batch_size=16, split="train", process_index=p,
                             process_count=2):
      assert b["image"].shape == (8, 28, 28, 1) and b["image"].dtype == np.float32
      for img, label, m in zip(b["image"], b["label"], b["mask"]):
        if m:
          key = _to_uint8(img).tobytes()
          np.testing.assert_array_equal(img, np.frombuffer(key, np.uint8).reshape(28, 28, 1)
                                        .astype(np.float32) / 127.5 - 1)
          assert official[key] == label  # KeyError if the pixels differ from the idx file.
          seen.append(key)
  assert sorted(seen) == sorted(official)
  # Training batches: RGB 32x32 conversion of the same examples.
  cfg.update(image_size=32, channels=3)
  b = next(D.train_iterator(cfg, global_batch_size=8, seed=0, process_index=0, process_count=1))
  assert b["image"].shape == (8, 32, 32, 3) and b["label"].dtype == np.int32
  assert -1 <= b["image"].min() < b["image"].max() <= 1
  np.testing.assert_array_equal(b["image"][..., 0], b["image"][..., 2])  # grey tiled to RGB


def test_tfds_not_prepared_fails_fast_with_instructions(tmp_path):
  import tensorflow_datasets  # noqa: F401  (import time is not what is measured)
  cfg = _cfg(source="tfds", name="mnist", data_dir=str(tmp_path / "empty"), download=False)
  t = time.time()
  with pytest.raises(ConfigError) as e:
    D.validate(cfg)
  assert time.time() - t < 5
  msg = str(e.value)
  assert "'mnist'" in msg and "python -m jaxgen.data.prepare mnist --manual_dir" in msg
  assert "data.download=True" in msg
  with pytest.raises(ConfigError, match="no_such_dataset"):
    D.validate(_cfg(source="tfds", name="no_such_dataset", data_dir=str(tmp_path)))


@pytest.mark.parametrize("kw, match", [
    (dict(source="nope"), "data.source='nope'"),
    (dict(channels=2), "data.channels=2"),
    (dict(image_size=0), "data.image_size=0"),
    (dict(source="folder", path="/nonexistent"), "/nonexistent"),
    (dict(source="captions", path="/nonexistent"), "captions.jsonl"),
    (dict(source="arrays", name="unregistered"), "unregistered"),
    (dict(eval_split="validation"), "'validation'"),
    (dict(num_classes=7), "num_classes=10"),
])
def test_validate_rejects_bad_configs(kw, match):
  with pytest.raises(ConfigError, match=match):
    D.validate(_cfg(**kw))


def _arrays_cfg(n=20, **kw):
  """Registered random images whose label is their index, so batches reveal which rows they hold."""
  images = np.random.default_rng(0).integers(0, 256, (n, 6, 6, 1), dtype=np.uint8)
  D.register_arrays("test_idx", images, np.arange(n))
  return _cfg(source="arrays", name="test_idx", image_size=6, channels=1, num_classes=n, **kw), images


def test_train_order_resume_and_process_slices():
  cfg, images = _arrays_cfg(random_flip=True)
  n, bs, steps = 20, 8, 6

  def run(seed, start=0, p=0, count=1):
    it = D.train_iterator(cfg, global_batch_size=bs, seed=seed, start_step=start, process_index=p,
                          process_count=count)
    return _take(it, steps - start)

  ref = run(seed=3)
  labels = np.concatenate([b["label"] for b in ref])
  # The stream is the concatenation of per-epoch permutations of (seed, epoch).
  expected = np.concatenate([np.random.default_rng([3, e]).permutation(n) for e in range(3)])
  np.testing.assert_array_equal(labels, expected[:steps * bs])
  # Every image is its example, flipped or not; flips happen.
  flips = []
  for b in ref:
    for img, label in zip(b["image"], b["label"]):
      orig = images[label].astype(np.float32) / 127.5 - 1
      flipped = np.array_equal(img, orig[:, ::-1])
      assert flipped or np.array_equal(img, orig)
      flips.append(flipped)
  assert 0.2 < np.mean(flips) < 0.8
  per_step = np.reshape(flips, (steps, bs))
  assert len({tuple(f) for f in per_step}) > 1, "flips must vary with the stream position"
  same = run(seed=3)
  for a, b in zip(ref, same):
    np.testing.assert_array_equal(a["image"], b["image"])
  other = run(seed=4)
  assert not np.array_equal(np.concatenate([b["label"] for b in other]), labels)
  # Resume at step 2 (batch 2 spans the epoch boundary at position 20): same batches, same flips.
  for a, b in zip(ref[2:], run(seed=3, start=2)):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
  # Two processes' local batches, concatenated, are the one-process global batch.
  halves = [run(seed=3, p=p, count=2) for p in range(2)]
  for g, b0, b1 in zip(ref, *halves):
    assert b0["image"].shape[0] == bs // 2
    for k in g:
      np.testing.assert_array_equal(np.concatenate([b0[k], b1[k]]), g[k])
  with pytest.raises(ConfigError, match="not divisible"):
    D.train_iterator(cfg, global_batch_size=7, seed=0, process_index=0, process_count=2)


def test_eval_iterator_covers_each_example_once():
  cfg, images = _arrays_cfg(n=20)
  per_process = [list(D.eval_iterator(cfg, global_batch_size=8, split="test", process_index=p,
                                      process_count=2)) for p in range(2)]
  assert [len(x) for x in per_process] == [3, 3]
  labels, masks = [], []
  for b0, b1 in zip(*per_process):
    labels.append(np.concatenate([b0["label"], b1["label"]]))
    masks.append(np.concatenate([b0["mask"], b1["mask"]]))
    assert b0["mask"].dtype == np.float32
  labels, masks = np.concatenate(labels), np.concatenate(masks)
  np.testing.assert_array_equal(masks, [1] * 20 + [0] * 4)
  np.testing.assert_array_equal(labels[:20], np.arange(20))  # fixed order, each example once
  assert len(list(D.eval_iterator(cfg, global_batch_size=8, num_examples=9, process_index=0,
                                  process_count=1))) == 2


def test_folder_source_on_cifar10_jpegs(tmp_path, shared_datasets):
  want = {("train", "airplane"), ("train", "bird"), ("test", "automobile"), ("test", "bird")}
  counts = {}
  with tarfile.open(shared_datasets / "cifar10-jpeg.tar.gz") as tar:
    for m in tar:
      parts = m.name.split("/")
      if len(parts) == 4 and tuple(parts[1:3]) in want and counts.get(tuple(parts[1:3]), 0) < 3:
        counts[tuple(parts[1:3])] = counts.get(tuple(parts[1:3]), 0) + 1
        tar.extract(m, tmp_path, filter="data")
      if len(counts) == 4 and min(counts.values()) == 3:
        break
  root = tmp_path / "cifar10"
  cfg = _cfg(source="folder", path=str(root), num_classes=3, image_size=32, channels=3)
  D.validate(cfg)
  assert D.num_examples(cfg, "train") == 6
  (b,) = D.eval_iterator(cfg, global_batch_size=8, split="train", process_index=0, process_count=1)
  # Classes are the sorted union of class folders: airplane=0, automobile=1, bird=2.
  np.testing.assert_array_equal(b["label"][:6], [0, 0, 0, 2, 2, 2])
  files = sorted((root / "train" / "airplane").iterdir()) + sorted((root / "train" / "bird").iterdir())
  for img, f in zip(b["image"], files):
    ref = np.asarray(Image.open(f).convert("RGB"), np.float32) / 127.5 - 1
    # Exact: JPEGs are decoded with libjpeg's accurate DCT, as PIL does.
    np.testing.assert_allclose(img, ref, atol=1e-6)
  (t,) = D.eval_iterator(cfg, global_batch_size=8, process_index=0, process_count=1)
  np.testing.assert_array_equal(t["label"][:6], [1, 1, 1, 2, 2, 2])
  cfg.update(image_size=16, channels=1)
  b = next(D.train_iterator(cfg, global_batch_size=4, seed=0, process_index=0, process_count=1))
  assert b["image"].shape == (4, 16, 16, 1) and -1 <= b["image"].min() <= b["image"].max() <= 1


def test_captions_source_tokens_detokenize_to_captions(shared_datasets):
  path = shared_datasets / "skimage_captions"
  cfg = _cfg(source="captions", path=str(path), caption_max_len=40, image_size=24, num_classes=0)
  D.validate(cfg)
  with open(path / "captions.jsonl") as f:
    captions = [json.loads(line)["caption"] for line in f]
  (b,) = D.eval_iterator(cfg, global_batch_size=len(captions), process_index=0, process_count=1)
  assert text.detokenize(b["caption_tokens"]) == [c.encode()[:40].decode() for c in captions]
  assert b["image"].shape == (8, 24, 24, 3) and -1 <= b["image"].min() <= b["image"].max() <= 1
  with pytest.raises(ConfigError, match="no labels"):
    D.validate(_cfg(source="captions", path=str(path), num_classes=3))
  train = next(D.train_iterator(cfg, global_batch_size=4, seed=0, process_index=0, process_count=1))
  ex = D.example_batch(cfg, 4)
  assert {k: (v.shape, v.dtype) for k, v in train.items()} == {
      k: (v.shape, v.dtype) for k, v in ex.items()}


def test_shapes_dataset_content_matches_labels():
  size, n = 64, 48
  cfg = _cfg(source="shapes", image_size=size, num_classes=10)
  (b,) = D.eval_iterator(cfg, global_batch_size=n, num_examples=n, process_index=0, process_count=1)
  p = shapes.params(np.arange(n), "test")
  np.testing.assert_array_equal(b["label"], p["label"])
  img = _to_uint8(b["image"])
  colours, backgrounds = list(shapes.COLOURS.values()), list(shapes.BACKGROUNDS.values())
  for i in range(n):
    shape, colour = divmod(int(b["label"][i]), 2)
    fg = np.array(colours[colour])
    cy, cx = int(p["cy"][i] * size), int(p["cx"][i] * size)
    np.testing.assert_array_equal(img[i, cy, cx], fg)  # the shape's centre has the label's colour
    np.testing.assert_array_equal(img[i, 0, 0], backgrounds[p["background"][i]])
    area = np.all(img[i] == fg, axis=-1).sum() / (p["r"][i] * size) ** 2
    assert abs(area / shapes.AREA_OVER_R2[shapes.SHAPES[shape]] - 1) < 0.06, (i, shape, area)
    caption = text.detokenize(b["caption_tokens"][i:i + 1])[0]
    assert caption.startswith(f"a {list(shapes.COLOURS)[colour]} {shapes.SHAPES[shape]} on a ")
  assert set(b["label"].tolist()) == set(range(10))
  # Deterministic, and example_batch describes the training batches exactly.
  tcfg = _cfg(source="shapes", num_classes=10, random_flip=True)
  a, c = (_take(D.train_iterator(tcfg, global_batch_size=16, seed=1, process_index=0,
                                 process_count=1), 2) for _ in range(2))
  for x, y in zip(a, c):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])
  ex = D.example_batch(tcfg, 16)
  assert {k: (v.shape, v.dtype) for k, v in a[0].items()} == {
      k: (v.shape, v.dtype) for k, v in ex.items()}
  assert set(ex) == {"image", "label", "caption_tokens"}
  assert D.num_examples(tcfg, "train") == 50_000 and D.num_examples(tcfg, "test") == 10_000
