"""CLIP networks (jaxgen.models.clip) and the weight converters (jaxgen.weights.clip)."""
import functools
import json
import pathlib
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import pretrained
from jaxgen.errors import ConfigError
from jaxgen.metrics.weights import WeightsError
from jaxgen.models import clip
from jaxgen.weights import clip as clip_weights

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
  variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), tokens)
  text = jax.jit(lambda t: model.apply(variables, t, method=clip.CLIP.encode_text))
  base = text(tokens)
  after = tokens.at[:, 6:].set(7)               # tokens after EOT cannot change the EOT feature
  np.testing.assert_array_equal(np.asarray(text(after)), np.asarray(base))
  before = tokens.at[:, 2].set(7)               # tokens before it do
  assert np.abs(np.asarray(text(before)) - np.asarray(base)).max() > 1e-3
  np.testing.assert_allclose(float(variables["params"]["logit_scale"]), np.log(1 / 0.07), rtol=1e-6)


def test_config_errors():
  with pytest.raises(ConfigError, match="vision_patch_size"):
    clip.from_config(dict(TINY_VIT, vision_patch_size=5))
  with pytest.raises(ConfigError, match="vision_heads"):
    clip.from_config(dict(TINY_VIT, vision_heads=3))
  with pytest.raises(ConfigError, match="missing"):
    clip.from_config({k: v for k, v in TINY_VIT.items() if k != "embed_dim"})
  with pytest.raises(ConfigError, match="dtype"):
    clip.from_config(dict(TINY_VIT, dtype="float64"))


# --------------------------------------------------------------------------------------- converters
GOLDEN = pathlib.Path(__file__).resolve().parent / "golden"
# (golden prefix, file, converter): made by tests/golden/make_clip_golden.py from randomly
# initialised transformers CLIPModel / openai/CLIP model.py networks.
FILES = [("hf", "clip_hf_tiny.safetensors", "clip_hf"),
         ("hf", "clip_hf_tiny.bin", "clip_hf"),
         ("vit", "clip_openai_vit_tiny.pt", "clip_openai"),        # TorchScript archive
         ("vit", "clip_openai_vit_tiny_sd.pt", "clip_openai"),     # torch.save(state_dict())
         ("rn", "clip_openai_rn_tiny.pt", "clip_openai")]          # open_clip checkpoint, legacy format
ARCH = {"hf": dict(TINY_VIT, embed_dim=8, vision_width=16, transformer_width=16),
        "vit": dict(TINY_VIT, embed_dim=8, vision_width=16, transformer_width=16),
        "rn": dict(TINY_VIT, embed_dim=8, image_resolution=64, vision_layers=(1, 1, 1, 1),
                   vision_width=4, vision_patch_size=None, vision_heads=None, transformer_width=16)}


@functools.lru_cache(maxsize=None)
def _apply(prefix):
  """One compiled forward pass per architecture (files of the same model share it)."""
  return jax.jit(clip.from_config(ARCH[prefix]).apply)


@pytest.fixture(scope="module")
def golden():
  with np.load(GOLDEN / "clip_golden.npz") as f:
    return dict(f)


@pytest.mark.parametrize("prefix,name,converter", FILES)
def test_converted_weights_reproduce_the_reference(golden, prefix, name, converter):
  variables = pretrained.converter(converter, "test")(GOLDEN / name)
  assert ("batch_stats" in variables) == (prefix == "rn")
  img, txt, scale = _apply(prefix)(variables, jnp.asarray(golden[f"{prefix}/images"]),
                                jnp.asarray(golden[f"{prefix}/tokens"]))
  np.testing.assert_allclose(img, golden[f"{prefix}/image_features"], atol=1e-5, rtol=0)
  np.testing.assert_allclose(txt, golden[f"{prefix}/text_features"], atol=1e-5, rtol=0)
  np.testing.assert_allclose(float(scale), golden[f"{prefix}/logit_scale"], rtol=1e-7)
  norm = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  logits = np.exp(float(scale)) * norm(np.asarray(img)) @ norm(np.asarray(txt)).T
  np.testing.assert_allclose(logits, golden[f"{prefix}/logits_per_image"], atol=1e-4, rtol=0)


def test_architecture_inferred_from_the_files():
  for prefix, name, converter in FILES[::2]:
    need = clip_weights.config_from_state_dict(clip_weights.openai_state_dict(GOLDEN / name, converter))
    for key in clip_weights.ARCH_KEYS:
      assert need[key] == ARCH[prefix][key], (name, key)


def test_wrong_files_and_configs_are_named():
  with pytest.raises(WeightsError, match="use converter 'clip_hf'"):
    clip_weights.read_openai(GOLDEN / "clip_hf_tiny.bin")
  with pytest.raises(WeightsError, match="use converter 'clip_openai'"):
    clip_weights.read_hf(GOLDEN / "clip_openai_vit_tiny_sd.pt")
  with pytest.raises(WeightsError, match="not a safetensors file"):
    clip_weights.read_hf(GOLDEN / "make_clip_golden.py")
  with pytest.raises(ConfigError, match=r"embed_dim=8 \(config has 16\)"):
    clip_weights.load(GOLDEN / "clip_hf_tiny.safetensors", "clip_hf", dict(ARCH["hf"], embed_dim=16))
  with pytest.raises(ConfigError, match=r"vision_layers=\(1, 1, 1, 1\) \(config has 2\)"):
    clip_weights.load(GOLDEN / "clip_openai_rn_tiny.pt", "clip_openai", ARCH["vit"])


def test_safetensors_dtypes(tmp_path):
  values = np.array([[1.5, -2.25, 3.0e-3], [0.0, 65504.0, -1.0]], np.float32)
  bf16 = (values.view(np.uint32) >> 16).astype("<u2")       # exact for these values
  tensors = {"a": ("F32", values.astype("<f4")), "b": ("F16", values.astype("<f2")), "c": ("BF16", bf16)}
  header, body = {"__metadata__": {"format": "pt"}}, b""
  for name, (kind, arr) in tensors.items():
    header[name] = {"dtype": kind, "shape": list(arr.shape), "data_offsets": [len(body), len(body) + arr.nbytes]}
    body += arr.tobytes()
  raw = json.dumps(header).encode()
  (tmp_path / "m.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + body)
  got = clip_weights.read_safetensors(tmp_path / "m.safetensors")
  assert set(got) == {"a", "b", "c"}
  np.testing.assert_array_equal(got["a"], values)
  np.testing.assert_array_equal(got["b"], values.astype(np.float16))
  np.testing.assert_array_equal(got["c"], (bf16.astype(np.uint32) << 16).view(np.float32))
  assert got["c"].dtype == np.float32


def test_clip_score_with_an_imported_resnet_clip():
  """The clip_score evaluator on a CLIP imported from a file (config.eval.clip = file + converter): the
  ResNet tower's BatchNorm statistics come with it, and the score equals the one computed directly
  from the converted variables (bicubic resize of 32 px samples to the tower's 64 px)."""
  import ml_collections
  from jaxgen import parallel
  from jaxgen.metrics import contrastive
  from jaxgen.methods.clip import l2_normalize
  path = str(GOLDEN / "clip_openai_rn_tiny.pt")
  c = ml_collections.ConfigDict({"mesh": {"data": -1, "fsdp": 1}, "eval": {
      "clip": dict(pretrained.part_defaults(), file=path, converter="clip_openai"),
      "clip_model": ARCH["rn"], "num_samples": 6, "batch_size": 4}})
  evaluator = contrastive.CLIPScore(c)
  evaluator.validate()
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, (6, 32, 32, 3)).astype(np.float32)
  tokens = rng.integers(1, 40, (6, 12)).astype(np.int32)
  tokens[:, 7] = 49                              # EOT: the largest id

  class Ctx:
    state = type("S", (), {"frozen": None})()
    mesh = parallel.create_mesh(c.mesh)
    def generate(self, num, name):
      return images[:num], {"caption_tokens": tokens[:num]}

  got = evaluator(Ctx())
  variables = clip_weights.load(path, "clip_openai")
  assert "batch_stats" in variables
  model = clip.from_config(ARCH["rn"])
  x = clip.normalize(jax.image.resize(jnp.asarray(images), (6, 64, 64, 3), "bicubic"))
  img = l2_normalize(model.apply(variables, x, method="encode_image"))
  txt = l2_normalize(model.apply(variables, jnp.asarray(tokens), method="encode_text"))
  want = contrastive.clip_score(np.asarray(img), np.asarray(txt))
  np.testing.assert_allclose(got["clip_score"], want["clip_score"], rtol=1e-5)


def test_load_variables_of_a_resnet_clip_run_carries_its_batch_stats(tmp_path):
  """pretrained.load_variables on a saved CLIP run with a ResNet tower (configs/clip/shapes.py:tiny
  with vision_layers=(1,1,1,1); running statistics moved off their initial values before saving):
  its sampling params and its BatchNorm running statistics, equal to the saved state's."""
  import ml_collections
  from jaxgen import config_check, parallel, train
  from jaxgen.configs import load_config_file
  c = load_config_file(str(pathlib.Path(__file__).resolve().parents[1] / "configs/clip/shapes.py:tiny"))
  c.model = ml_collections.ConfigDict({**c.model.to_dict(), "vision_layers": (1, 1, 1, 1),
                                      "vision_patch_size": None, "vision_heads": None, "vision_width": 8})
  for name in ("class_embedding", "positional_embedding_visual"):   # ViT-only parameters
    if name in c.optim.get("rules", {}):
      del c.optim.rules[name]
  mesh = parallel.create_mesh(c.mesh)
  state, _, ckpt = train.restore_or_init(config_check.validate(c), c, mesh, str(tmp_path))
  state = state.replace(model_state=jax.tree.map(lambda x: x + 0.5, state.model_state))
  ckpt.save(state)
  ckpt.close()
  holder = ml_collections.ConfigDict({"pretrained": {"clip": dict(pretrained.part_defaults(),
                                                                  workdir=str(tmp_path))}})
  got = pretrained.load_variables(holder, "clip", mesh)
  assert set(got) == {"params", "batch_stats"}
  want = {"params": state.ema_params if state.ema_params is not None else state.params,
          **state.model_state}
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(got), jax.device_get(want))
  # As a frozen part: declared as variables it receives the running statistics too; declared as a
  # params tree, params only; a running statistic of the wrong shape is named.
  holder.pretrained.clip.frozen = True
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), want)
  frozen = pretrained.load_frozen(holder, {"clip": abstract}, mesh)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(frozen["clip"]), jax.device_get(want))
  params_only = pretrained.load_frozen(holder, {"clip": abstract["params"]}, mesh)["clip"]
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(params_only), jax.device_get(want["params"]))
  first = jax.tree_util.tree_flatten_with_path(abstract["batch_stats"])[0][0][0]
  bad = jax.tree_util.tree_map_with_path(
      lambda kp, x: jax.ShapeDtypeStruct(x.shape + (1,), x.dtype) if kp == first else x,
      abstract["batch_stats"])
  with pytest.raises(ConfigError, match="batch_stats"):
    pretrained.load_frozen(holder, {"clip": {**abstract, "batch_stats": bad}}, mesh)
