"""Released CLIP weights -> jaxgen.models.clip variables, read without torch or safetensors.

Two converters (registered in jaxgen.pretrained.CONVERTERS):

  clip_openai  OpenAI's / open_clip's layout ("visual.conv1.weight", "transformer.resblocks.0.attn.
               in_proj_weight", ...): OpenAI's TorchScript archives (ViT-B-32.pt, RN50.pt, ...), a
               torch.save'd state dict (zip or legacy format) and open_clip checkpoints
               ({"state_dict": {"module.<key>": ...}}), all read by
               jaxgen.metrics.weights.read_torch_file (restricted unpickler, no torch).
  clip_hf      transformers' CLIPModel layout ("text_model.encoder.layers.0.self_attn.q_proj.weight",
               "vision_model.pre_layrnorm.weight", "visual_projection.weight", ...): model.safetensors
               (parsed here: 8-byte little-endian header length, JSON header, raw little-endian
               F32 / F16 / BF16 tensors) or pytorch_model.bin. Separate q / k / v projections are
               concatenated into OpenAI's in_proj, projections transposed, pre_layrnorm /
               post_layernorm become ln_pre / ln_post: the same network, the same outputs.

Both return the model's variables as nested numpy float32 arrays: {"params": ..., "batch_stats": ...}
("batch_stats", the BatchNorm running statistics, only for ResNet towers). As a pretrained part:
  config.pretrained.clip = dict(file="/path/ViT-B-32.pt", converter="clip_openai")        # variables
  config.pretrained.clip = dict(file=".../model.safetensors", converter="clip_hf", path="params")

`config_from_state_dict` infers the architecture as OpenAI's build_model does (the attention heads,
which the weights do not determine, by OpenAI's rule width // 64); `load(path, converter, model_cfg)`
converts and checks the file against a model config, with an error naming the config the file needs.
"""
import json
import os
import pathlib
import re
import struct
from typing import Any, Mapping, Optional

import numpy as np

from jaxgen.errors import ConfigError
from jaxgen.metrics.weights import WeightsError, _flatten_records, _Record, read_torch_file
from jaxgen.models import clip as clip_model
from jaxgen.pretrained import check_shapes

ARCH_KEYS = ("embed_dim", "image_resolution", "vision_layers", "vision_width", "vision_patch_size",
             "context_length", "vocab_size", "transformer_width", "transformer_layers")
# Not parameters: OpenAI's JIT archives carry these as tensors; transformers' position ids buffers.
_IGNORED = re.compile(r"(^|\.)(input_resolution|context_length|vocab_size|position_ids|attn_mask|"
                      r"num_batches_tracked)$")


# ------------------------------------------------------------------------------------- safetensors
_ST_DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I64": "<i8", "I32": "<i4", "I16": "<i2",
              "I8": "i1", "U8": "u1", "BOOL": "?"}


def read_safetensors(path: os.PathLike) -> dict[str, np.ndarray]:
  """A .safetensors file -> {name: numpy array} (BF16 widened to float32), without safetensors."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise WeightsError(f"weights file {path} does not exist.")
  data = path.read_bytes()
  try:
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
      raise ValueError(f"header length {n} exceeds the file")
    header = json.loads(data[8:8 + n])
  except (struct.error, ValueError, UnicodeDecodeError) as e:
    raise WeightsError(f"{path} is not a safetensors file ({e}).") from e
  body = memoryview(data)[8 + n:]
  out = {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    begin, end = info["data_offsets"]
    shape, kind = tuple(info["shape"]), info["dtype"]
    if kind == "BF16":
      raw = np.frombuffer(body[begin:end], "<u2").astype(np.uint32) << 16
      arr = raw.view(np.float32)
    elif kind in _ST_DTYPES:
      arr = np.frombuffer(body[begin:end], _ST_DTYPES[kind])
    else:
      raise WeightsError(f"{path}: tensor {name} has unsupported dtype {kind}.")
    if arr.size != int(np.prod(shape)):
      raise WeightsError(f"{path}: tensor {name} holds {arr.size} values for shape {shape}.")
    out[name] = arr.reshape(shape).copy()
  return out


# ------------------------------------------------------------------------------------ state dicts
def _torch_state_dict(path: os.PathLike) -> dict[str, np.ndarray]:
  """A torch file (TorchScript archive, state dict, open_clip checkpoint) -> flat '.'-keyed dict."""
  obj = read_torch_file(path)
  if isinstance(obj, _Record):     # TorchScript: the module tree's attributes
    return {k.replace("/", "."): v for k, v in _flatten_records(obj).items()}
  if isinstance(obj, dict):
    obj = obj.get("state_dict", obj)
  if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
    raise WeightsError(f"{path} holds no state dict of tensors.")
  return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def _keep(sd: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  return {k: v for k, v in sd.items() if not _IGNORED.search(k)}


_HF_BLOCK = {"self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "layer_norm2": "ln_2",
             "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
_HF_TOP = {"text_model.embeddings.token_embedding.weight": "token_embedding.weight",
           "text_model.embeddings.position_embedding.weight": "positional_embedding",
           "text_model.final_layer_norm.weight": "ln_final.weight",
           "text_model.final_layer_norm.bias": "ln_final.bias",
           "vision_model.embeddings.class_embedding": "visual.class_embedding",
           "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
           "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
           "vision_model.pre_layrnorm.weight": "visual.ln_pre.weight",
           "vision_model.pre_layrnorm.bias": "visual.ln_pre.bias",
           "vision_model.post_layernorm.weight": "visual.ln_post.weight",
           "vision_model.post_layernorm.bias": "visual.ln_post.bias",
           "logit_scale": "logit_scale"}


def hf_to_openai(sd: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """transformers' CLIPModel state dict -> OpenAI's layout (same network)."""
  sd = _keep(sd)
  if "text_model.embeddings.token_embedding.weight" not in sd:
    hint = (" It is in OpenAI's / open_clip's layout: use converter 'clip_openai'."
            if "token_embedding.weight" in sd else "")
    raise WeightsError("not a transformers CLIPModel state dict (no text_model.embeddings."
                       f"token_embedding.weight).{hint}")
  out, qkv = {}, {}
  for key, v in sd.items():
    if key in _HF_TOP:
      out[_HF_TOP[key]] = v
    elif key in ("text_projection.weight", "visual_projection.weight"):
      out["text_projection" if key.startswith("text") else "visual.proj"] = v.T
    else:
      m = re.fullmatch(r"(text|vision)_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", key)
      if not m:
        raise WeightsError(f"unknown transformers CLIPModel key {key!r}.")
      tower, i, name, leaf = m.groups()
      prefix = f"{'' if tower == 'text' else 'visual.'}transformer.resblocks.{i}."
      q = re.fullmatch(r"self_attn\.([qkv])_proj", name)
      if q:
        qkv.setdefault((prefix, leaf), {})[q.group(1)] = v
      elif name in _HF_BLOCK:
        out[f"{prefix}{_HF_BLOCK[name]}.{leaf}"] = v
      else:
        raise WeightsError(f"unknown transformers CLIPModel key {key!r}.")
  for (prefix, leaf), parts in qkv.items():
    if set(parts) != {"q", "k", "v"}:
      raise WeightsError(f"{prefix}: the file lacks some of the q / k / v projections' {leaf}.")
    out[f"{prefix}attn.in_proj_{leaf}"] = np.concatenate([parts[c] for c in "qkv"], axis=0)
  return out


def config_from_state_dict(sd: Mapping[str, np.ndarray]) -> dict:
  """The model config of an OpenAI-layout state dict, inferred as OpenAI's build_model does. The
  heads are not in the weights: OpenAI's rule (width // 64), or 1 where that gives none."""
  try:
    if "visual.proj" in sd:
      width = sd["visual.conv1.weight"].shape[0]
      layers = len({k.split(".")[3] for k in sd if k.startswith("visual.transformer.resblocks.")})
      patch = sd["visual.conv1.weight"].shape[-1]
      grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
      resolution, heads = patch * grid, width // 64
    else:
      layers = tuple(len({k.split(".")[2] for k in sd if k.startswith(f"visual.layer{b}.")})
                     for b in (1, 2, 3, 4))
      width = sd["visual.layer1.0.conv1.weight"].shape[0]
      out_width = round((sd["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
      patch, resolution, heads = None, out_width * 32, width * 32 // 64
    twidth = sd["ln_final.weight"].shape[0]
    return dict(
        embed_dim=int(sd["text_projection"].shape[1]), image_resolution=int(resolution),
        vision_layers=layers, vision_width=int(width),
        vision_patch_size=None if patch is None else int(patch),
        context_length=int(sd["positional_embedding"].shape[0]),
        vocab_size=int(sd["token_embedding.weight"].shape[0]), transformer_width=int(twidth),
        transformer_heads=max(1, twidth // 64),
        transformer_layers=len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")}),
        vision_heads=max(1, heads), quick_gelu=True, dtype="float32")
  except KeyError as e:
    hint = (" It is in transformers' layout: use converter 'clip_hf'."
            if any(k.startswith("text_model.") for k in sd) else "")
    raise WeightsError(f"not a CLIP state dict in OpenAI's layout (no {e.args[0]!r}).{hint}") from e


def _path(key: str) -> list[str]:
  """'visual.layer1.0.downsample.1' -> ['visual', 'layer1_0', 'downsample_1'] (list indices
  joined to the name before them, as jaxgen.models.clip names its submodules)."""
  out = []
  for part in key.split("."):
    if part.isdigit() and out:
      out[-1] = f"{out[-1]}_{part}"
    else:
      out.append(part)
  return out


def openai_to_variables(sd: Mapping[str, np.ndarray]) -> dict:
  """An OpenAI-layout state dict -> {"params"[, "batch_stats"]} in jaxgen.models.clip's layout,
  checked against the architecture it implies."""
  sd = _keep(sd)
  cfg = config_from_state_dict(sd)
  out: dict = {"params": {}}
  for key, v in sd.items():
    v = np.asarray(v, np.float32)
    *parents, leaf = _path(key)
    collection = "params"
    if leaf in ("weight", "in_proj_weight"):
      if leaf == "in_proj_weight":
        parents, leaf, v = parents + ["in_proj"], "kernel", v.T
      elif parents[-1] == "token_embedding":
        leaf = "embedding"
      else:
        leaf = {1: "scale", 2: "kernel", 4: "kernel"}[v.ndim]
        v = v.T if v.ndim == 2 else (v.transpose(2, 3, 1, 0) if v.ndim == 4 else v)  # OIHW -> HWIO
    elif leaf == "in_proj_bias":
      parents, leaf = parents + ["in_proj"], "bias"
    elif leaf in ("running_mean", "running_var"):
      collection, leaf = "batch_stats", leaf[len("running_"):]
    node = out.setdefault(collection, {})
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = v
  try:
    check_shapes(out, clip_model.abstract_variables(cfg), "CLIP weights")
  except ConfigError as e:
    raise WeightsError(f"{e} (inferred architecture: {cfg})") from e
  return out


# ------------------------------------------------------------------------------------- converters
def _hf_state_dict(path: os.PathLike) -> dict[str, np.ndarray]:
  """model.safetensors, or a torch file (pytorch_model.bin) by its zip / legacy pickle header."""
  with open(path, "rb") as f:
    head = f.read(2)
  if head == b"PK" or head[:1] == b"\x80":
    return _torch_state_dict(path)
  return read_safetensors(path)


def openai_state_dict(path: os.PathLike, converter: str) -> dict[str, np.ndarray]:
  """The file's weights as an OpenAI-layout state dict (converter 'clip_openai' or 'clip_hf')."""
  if converter == "clip_hf":
    return hf_to_openai(_hf_state_dict(path))
  if converter == "clip_openai":
    return _keep(_torch_state_dict(path))
  raise ConfigError(f"converter={converter!r} is not a CLIP converter; use 'clip_openai' or 'clip_hf'.")


def read_openai(path: os.PathLike) -> dict:
  """Converter 'clip_openai': OpenAI's JIT archive / state dict or an open_clip checkpoint."""
  return openai_to_variables(openai_state_dict(path, "clip_openai"))


def read_hf(path: os.PathLike) -> dict:
  """Converter 'clip_hf': transformers' CLIPModel model.safetensors or pytorch_model.bin."""
  return openai_to_variables(openai_state_dict(path, "clip_hf"))


def load(path: os.PathLike, converter: str, model_cfg: Optional[Mapping] = None) -> dict:
  """The file's variables; with `model_cfg`, ConfigError when its architecture is not the file's,
  naming the values the config needs."""
  sd = openai_state_dict(path, converter)
  variables = openai_to_variables(sd)
  if model_cfg is not None:
    need = config_from_state_dict(sd)
    have = {k: clip_model._get(model_cfg, k) for k in ARCH_KEYS}
    have["vision_layers"] = (tuple(have["vision_layers"]) if isinstance(have["vision_layers"], (list, tuple))
                             else have["vision_layers"])
    if isinstance(need["vision_layers"], tuple):
      have["vision_patch_size"] = None
    wrong = {k: (have[k], need[k]) for k in ARCH_KEYS if have[k] != need[k]}
    if wrong:
      fix = ", ".join(f"{k}={n!r} (config has {h!r})" for k, (h, n) in wrong.items())
      raise ConfigError(f"{path} holds a CLIP that needs config.model {fix}; its full "
                        f"architecture: {need}.")
    check_shapes(variables["params"], clip_model.abstract_variables(model_cfg)["params"],
                 f"CLIP weights {path}")
  return variables
