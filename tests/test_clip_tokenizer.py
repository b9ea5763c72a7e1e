"""CLIP's BPE tokenizer (jaxgen.data.clip_tokenizer), captions from class names, prompt templates.

Reference: tests/golden/clip_tokenizer.npz, made by tests/golden/make_clip_tokenizer_golden.py with
open_clip 3.3.0's own tokenizer module (no torch here). The vocabulary is fetched from PyPI into the
jaxgen cache on first use (as the VGG weights are) and verified by sha256.
"""
import html
import json
import pathlib
import subprocess
import sys
import tarfile

import numpy as np
import pytest

import jaxgen.data as D
from jaxgen.configs import base_config
from jaxgen.data import class_names
from jaxgen.data import clip_tokenizer as ct
from jaxgen.data import prompts
from jaxgen.data import shapes
from jaxgen.data import sources
from jaxgen.data import text
from jaxgen.errors import ConfigError
from jaxgen.metrics.weights import WeightsError, cache_dir

REPO = pathlib.Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden" / "clip_tokenizer.npz"


@pytest.fixture(scope="module")
def golden():
  with np.load(GOLDEN, allow_pickle=False) as z:
    return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def tok():
  return ct.get()


def _cfg(**kw):
  c = base_config().data
  c.update(kw)
  return c


def test_ids_equal_open_clip_on_real_and_awkward_strings(tok, golden, shared_datasets):
  texts = [str(t) for t in golden["texts"]]
  np.testing.assert_array_equal(tok(texts), golden["tokens77"])
  np.testing.assert_array_equal(tok(texts, 8), golden["tokens8"])   # truncation, EOT kept last
  assert [tok.decode(tok.encode(t)) for t in texts] == [str(t) for t in golden["decoded"]]
  # The golden covers the real captions of the shared folder and the shapes captions.
  rows = (shared_datasets / "skimage_captions" / "captions.jsonl").read_text().splitlines()
  assert texts[:8] == [json.loads(r)["caption"] for r in rows if r.strip()]
  assert texts[8:14] == shapes.captions(shapes.params(np.arange(6), "train"))
  # Awkward cases the golden must contain (so the equality above covers them).
  for s in ("", "it's 3.14!", "&amp;amp; &lt;b&gt;bold&lt;/b&gt; &quot;quoted&quot; &#39;x&#39;",
            "&amp;amp;amp; triple", "<b>tag &amp;amp; kept</b>", "ligatures ﬁ ﬂ ﬃ ﬀ",
            "emoji 🐱🚀👍🏽 👨‍👩‍👧", "cafe\u0301 combining e\u0301"):
    assert s in texts


def test_layout_truncation_special_tokens_and_vocabulary(tok, golden):
  assert len(tok.decoder) == ct.VOCAB_SIZE == text.CLIP_VOCAB_SIZE == 49408
  assert tok.encoder["<start_of_text>"] == ct.SOT == 49406
  assert tok.decoder[ct.EOT] == "<end_of_text>"
  rows = tok(["", "   \t\n ", "a photo of a cat.", "word " * 100])
  assert rows.dtype == np.int32 and rows.shape == (4, 77)
  np.testing.assert_array_equal(rows[0, :3], [ct.SOT, ct.EOT, 0])
  np.testing.assert_array_equal(rows[0], rows[1])        # whitespace only == empty
  assert rows[2, :8].tolist() == [ct.SOT, 320, 1125, 539, 320, 2368, 269, ct.EOT]  # CLIP's ids
  assert rows[3, 0] == ct.SOT and rows[3, 76] == ct.EOT and (rows[3, 1:76] == 2653).all()
  assert tok.detokenize(rows[2:]) == ["a photo of a cat . ", "word " * 75]
  # Upper case and html entities are normalised before BPE.
  assert tok.encode("A PHOTO of a CAT.") == tok.encode("a photo of a cat.")
  assert tok.encode("fish &amp;amp; chips") == tok.encode("fish & chips")
  with pytest.raises(ConfigError, match="context_length=1"):
    tok(["a"], 1)


def test_ascii_fast_path_cleans_as_ftfy_does():
  import ftfy  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  chars = np.array([chr(c) for c in range(32, 127) if chr(c) != "&"])
  texts = ["".join(rng.choice(chars, n)) for n in rng.integers(0, 40, 500)]
  texts += ["  It's a `quoted' \"test\" -- 3.14... <b>ok</b> ", "x" * 500]
  for t in texts:
    assert ct.basic_clean(t) == html.unescape(html.unescape(ftfy.fix_text(t))).strip(), t


def test_decode_encode_round_trip_on_cleaned_text(tok, golden):
  for s in map(str, golden["texts"]):
    ids = tok.encode(s)
    back = tok.decode(ids)
    # Decoding puts a space after each word; the bytes are those of the cleaned text.
    assert "".join(back.split()) == "".join(ct.clean(s).split()), s
    assert tok.encode(back) == ids, s
  hits = tok._word_ids.cache_info().hits   # pylint: disable=protected-access
  tok(["a red circle on a gray background"] * 50)
  assert tok._word_ids.cache_info().hits >= hits + 49 * 7   # pylint: disable=protected-access


def test_vocabulary_hash_is_verified_and_tampered_files_rejected(tmp_path, monkeypatch):
  monkeypatch.delenv(ct.ENV, raising=False)
  good = ct.vocab_file()   # fetched from PyPI into the cache on first use
  assert good == cache_dir() / "clip" / "bpe_simple_vocab_16e6.txt.gz"
  assert good.stat().st_size == ct.VOCAB_BYTES
  with pytest.raises(WeightsError, match="does not exist.*pip download --no-deps open-clip-torch"):
    ct.Tokenizer(tmp_path / "missing.txt.gz")
  data = bytearray(good.read_bytes())
  data[len(data) // 2] ^= 1
  (tmp_path / "tampered.gz").write_bytes(bytes(data))
  with pytest.raises(WeightsError, match="not CLIP's bpe_simple_vocab_16e6.txt.gz.*sha256"):
    ct.Tokenizer(tmp_path / "tampered.gz")
  (tmp_path / "short.gz").write_bytes(bytes(data[:1000]))
  with pytest.raises(WeightsError, match="1,000 bytes"):
    ct.Tokenizer(tmp_path / "short.gz")
  # A user-given copy (argument or environment) is used as is, after the same check.
  (tmp_path / "copy.gz").write_bytes(good.read_bytes())
  monkeypatch.setenv(ct.ENV, str(tmp_path / "copy.gz"))
  assert ct.vocab_file() == tmp_path / "copy.gz"
  assert ct.get().encode("hello world") == [3306, 1002]
  monkeypatch.setenv(ct.ENV, str(tmp_path / "nowhere.gz"))
  with pytest.raises(ConfigError, match="JAXGEN_CLIP_VOCAB.*nowhere.gz.*is not a file"):
    D.validate(_cfg(tokenizer="clip", caption_max_len=77))


def test_shapes_and_captions_folder_batches_with_clip_tokens(tok, golden, shared_datasets):
  cfg = _cfg(source="shapes", tokenizer="clip", caption_max_len=77, image_size=16)
  D.validate(cfg)
  assert text.vocab_size(cfg) == 49408 and text.vocab_size(_cfg()) == 257
  assert D.example_batch(cfg, 4)["caption_tokens"].shape == (4, 77)
  out = sources.get(cfg, "test", load=True).read(np.arange(40))
  want = tok(shapes.captions(shapes.params(np.arange(40), "test")))
  np.testing.assert_array_equal(out["caption_tokens"], want)
  # The byte tokenizer's table gives today's ids.
  out = sources.get(_cfg(source="shapes"), "test", load=True).read(np.arange(40))
  caps = shapes.captions(shapes.params(np.arange(40), "test"))
  np.testing.assert_array_equal(out["caption_tokens"], text.tokenize(caps, 64))
  cfg = _cfg(source="captions", path=str(shared_datasets / "skimage_captions"), tokenizer="clip",
             caption_max_len=77, image_size=16)
  D.validate(cfg)
  (b,) = D.eval_iterator(cfg, global_batch_size=8, process_index=0, process_count=1)
  np.testing.assert_array_equal(b["caption_tokens"], golden["tokens77"][:8])   # = open_clip's
  assert text.detokenize_captions(cfg, b["caption_tokens"])[2] == (
      "close - up of the face of a tabby cat with green eyes ")


@pytest.fixture(scope="module")
def cifar_folder(shared_datasets, tmp_path_factory):
  """3 real CIFAR-10 test JPEGs per class as a folder dataset root/test/<class>/*.jpg."""
  root = tmp_path_factory.mktemp("cifar")
  counts = {}
  with tarfile.open(shared_datasets / "cifar10-jpeg.tar.gz") as tar:
    for m in tar:
      parts = m.name.split("/")
      if m.isfile() and len(parts) == 4 and parts[1] == "test" and counts.get(parts[2], 0) < 3:
        counts[parts[2]] = counts.get(parts[2], 0) + 1
        (root / "test" / parts[2]).mkdir(parents=True, exist_ok=True)
        (root / "test" / parts[2] / parts[3]).write_bytes(tar.extractfile(m).read())
      if len(counts) == 10 and all(v == 3 for v in counts.values()):
        break
  return root


def test_label_captions_from_cifar10_class_names(tok, cifar_folder):
  cfg = _cfg(source="folder", path=str(cifar_folder), train_split="test", num_classes=10,
             tokenizer="clip", caption_max_len=77, label_captions="a photo of a {}.", image_size=16)
  D.validate(cfg)
  # Folder names, sorted, are the TFDS label order.
  assert class_names.for_dataset(cfg) == list(class_names.NAMES["cifar10"])
  assert D.example_batch(cfg, 2)["caption_tokens"].shape == (2, 77)
  (b,) = D.eval_iterator(cfg, global_batch_size=32, process_index=0, process_count=1)
  labels = b["label"][b["mask"] > 0]
  np.testing.assert_array_equal(labels, np.repeat(np.arange(10), 3))
  want = tok([f"a photo of a {class_names.NAMES['cifar10'][k]}." for k in labels])
  np.testing.assert_array_equal(b["caption_tokens"][:30], want)
  assert tok.detokenize(b["caption_tokens"][9:10]) == ["a photo of a cat . "]
  # With a class subset remapped to 0..k-1, label k is data.classes[k]'s name.
  sub = _cfg(**{**cfg.to_dict(), "classes": (5, 3), "remap_classes": True, "num_classes": 2,
                "tokenizer": "bytes", "caption_max_len": 24})
  assert class_names.for_dataset(sub) == ["dog", "cat"]
  out = sources.get(sub, "test", load=True).read(np.arange(6))
  assert text.detokenize(out["caption_tokens"]) == ["a photo of a cat."] * 3 + ["a photo of a dog."] * 3
  np.testing.assert_array_equal(out["label"], [1, 1, 1, 0, 0, 0])


def test_label_captions_on_real_mnist_with_clips_mnist_prompt(tok, mnist_numpy):
  images, labels = mnist_numpy["test"]
  D.register_arrays("mnist", images[:50], labels[:50])
  (template,) = prompts.templates("mnist")
  cfg = _cfg(source="arrays", name="mnist", num_classes=10, channels=1, image_size=28,
             tokenizer="clip", caption_max_len=16, label_captions=template)
  D.validate(cfg)
  out = sources.get(cfg, "test", load=True).read(np.arange(50))
  np.testing.assert_array_equal(out["label"], labels[:50])
  np.testing.assert_array_equal(out["caption_tokens"],
                                tok([f'a photo of the number: "{k}".' for k in labels[:50]], 16))


def test_class_names_and_prompt_templates():
  assert class_names.for_dataset(_cfg(source="tfds", name="mnist")) == [str(d) for d in range(10)]
  fm = class_names.for_dataset(_cfg(source="tfds", name="fashion_mnist:3.0.1"))
  assert fm[0] == "T-shirt/top" and fm[9] == "Ankle boot" and len(fm) == 10
  assert class_names.for_dataset(_cfg(source="arrays", name="cifar10"))[0] == "airplane"
  names = class_names.for_dataset(_cfg(source="shapes"))
  p = shapes.params(np.arange(200), "train")
  caps = shapes.captions(p)
  assert all(c.startswith(f"a {names[k]} on a ") for c, k in zip(caps, p["label"]))
  c10, inet = prompts.templates("cifar10"), prompts.templates("imagenet")
  assert len(c10) == 18 and len(inet) == 80 and len(set(inet)) == 80
  assert c10[0] == "a photo of a {}." and c10[-1] == "a photo of the big {}."
  assert inet[0] == "a bad photo of a {}." and inet[-1] == "a tattoo of the {}."
  assert prompts.templates("mnist") == ['a photo of the number: "{}".']
  assert all(t.count("{}") == 1 for t in c10 + inet)
  assert prompts.templates("fashion_mnist") == c10 and prompts.templates("simple") == c10[:1]
  with pytest.raises(ConfigError, match="No prompt templates named 'svhn'"):
    prompts.templates("svhn")
  with pytest.raises(ConfigError, match="No class names for data.source='tfds' data.name='svhn'"):
    class_names.for_dataset(_cfg(source="tfds", name="svhn"))
  # Importable without TensorFlow (the zero-shot evaluator's imports).
  code = ("import sys, jaxgen.data.class_names, jaxgen.data.prompts, jaxgen.data.clip_tokenizer; "
          "assert 'tensorflow' not in sys.modules")
  subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


@pytest.mark.parametrize("kw, match", [
    (dict(tokenizer="sentencepiece"),
     r"data.tokenizer='sentencepiece' must be one of \('bytes', 'clip'\)"),
    (dict(tokenizer="clip", caption_max_len=2),
     r"caption_max_len=2 must be an int >= 3 .*CLIP uses 77"),
    (dict(caption_max_len=0), r"caption_max_len=0 must be an int >= 1"),
    (dict(label_captions="a photo of a"), r"label_captions='a photo of a' must be a string with one"),
    (dict(label_captions="a {} of {}"), r"must be a string with one '\{\}'"),
    (dict(source="captions", path="/x", label_captions="a {}."), r"needs labels.*'captions' has none"),
    (dict(source="tfds", name="svhn", label_captions="a {}."), r"No class names.*'svhn'"),
    (dict(source="folder", path="/no/such", label_captions="a {}."),
     r"data.path='/no/such' is not a folder"),
])
def test_config_errors(kw, match):
  with pytest.raises(ConfigError, match=match):
    D.validate(_cfg(**kw))
