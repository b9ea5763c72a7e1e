"""CLIP (Radford et al. 2021): the text Transformer and the two image towers, ViT and modified ResNet.

A port of openai/CLIP `clip/model.py` (the layout open_clip and the released weights use):

  text      token embedding + learned positional embedding, `transformer_layers` pre-LN residual
            attention blocks (x + attn(ln_1(x)), x + mlp(ln_2(x)), MLP width 4x) with a causal mask,
            ln_final, the feature at the EOT token (`text_pool="argmax"`: argmax of the token ids,
            as OpenAI: the EOT id is the largest in the vocabulary; `"last"`: the last non-zero
            token, for tokenizers without such an end token, e.g. jaxgen's byte tokenizer, whose
            argmax is just the caption's largest byte), @ text_projection
  ViT       conv patch embedding (no bias), class token, positional embedding, ln_pre, transformer
            (no mask), ln_post on the class token, @ proj
  ResNet    3-conv stem (3x3 convs: stride 2, 1, 1; BatchNorm + ReLU each) + 2x2 average pool,
            Bottleneck stages (1x1, 3x3, [avg pool], 1x1, x4 expansion; anti-aliased: an average
            pool before the stride instead of a strided conv, also in the downsample branch),
            AttentionPool2d (the spatial mean as query token, positional embedding, one multi-head
            attention, c_proj)
  logit_scale  a scalar log-temperature initialised to log(1 / 0.07)

Activation: QuickGELU x * sigmoid(1.702 x) (`quick_gelu=True`, OpenAI's models) or exact GELU.
Initialisation: OpenAI's `initialize_parameters` (token embedding std 0.02, positional 0.01, text
blocks' in_proj std w^-0.5, out_proj / c_proj std w^-0.5 (2 L)^-0.5, c_fc std (2 w)^-0.5,
text_projection std w^-0.5; attention pool q/k/v/c_proj std C^-0.5, zero bn3 gain in every
Bottleneck); everything else as torch's defaults (Linear / Conv kernels kaiming-uniform(a=sqrt 5),
i.e. U(+-1/sqrt(fan_in)), biases U(+-1/sqrt(fan_in)), MultiheadAttention's in_proj xavier-uniform
with zero biases, ViT class / positional embedding and proj w^-0.5 * N(0, 1)).

Precision: params float32; matmuls / convolutions in `dtype` (config.model.dtype); LayerNorm,
BatchNorm statistics and the attention softmax in float32.

Interface (the CLIP method and the weight converters in jaxgen.weights.clip rely on exactly this):

  from_config(model_cfg) -> CLIP        model_cfg (dict or ConfigDict) with OpenAI build_model's names:
      embed_dim, image_resolution, vision_layers (int: ViT; 4 ints: ResNet), vision_width,
      vision_patch_size (ViT), context_length, vocab_size, transformer_width, transformer_heads,
      transformer_layers, plus quick_gelu (bool, default True), dtype ("float32" / "bfloat16",
      default "float32") and, optionally, vision_heads (default OpenAI's rule: vision_width // 64
      for ViT, vision_width * 32 // 64 for ResNet; small models need it set).
  CLIP.encode_image(images, train=False)  images float [B, R, R, 3] (R = image_resolution) already
      normalised with MEAN / STD (see `normalize`) -> [B, embed_dim], not L2-normalised.
      ResNet towers have BatchNorm: variables {"params", "batch_stats"}; train=True normalises with
      batch statistics and updates "batch_stats" (apply with mutable=["batch_stats"]).
  CLIP.encode_text(tokens)  int32 [B, context_length] -> [B, embed_dim], not L2-normalised.
  CLIP.__call__(images, tokens, train=False) -> (image_features, text_features, logit_scale), the
      last the raw log-parameter (the loss uses exp(logit_scale), clipped at 100).
  param_count(model_cfg) -> int          (via jax.eval_shape; equal to torch's parameters() count)
  VIT_B32, RN50                          OpenAI's configurations (151,277,313 / 102,007,137 params)

Param tree (names follow OpenAI's state dict, "." -> nesting, list indices -> "_i"):
  {"token_embedding": {"embedding"}, "positional_embedding", "transformer": {"resblocks_i": {"ln_1",
   "attn": {"in_proj", "out_proj"}, "ln_2", "mlp": {"c_fc", "c_proj"}}}, "ln_final",
   "text_projection", "logit_scale",
   "visual": ViT {"conv1", "class_embedding", "positional_embedding", "ln_pre", "transformer",
                  "ln_post", "proj"}
           | ResNet {"conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "layer{s}_{j}": {"conv1", "bn1",
                  "conv2", "bn2", "conv3", "bn3", ["downsample_0", "downsample_1"]}, "attnpool":
                  {"positional_embedding", "q_proj", "k_proj", "v_proj", "c_proj"}}}
Dense kernels are [in, out] (torch weight transposed), conv kernels HWIO, BatchNorm "scale"/"bias"
(+ "mean"/"var" in batch_stats), LayerNorm "scale"/"bias".
"""
import math
from typing import Any, Mapping, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.errors import ConfigError
from jaxgen.nn.dtypes import parse_dtype
from jaxgen.nn.linear import Conv, Dense
from jaxgen.nn.norm import BatchNorm

# CLIP's image normalisation (RGB in [0, 1]).
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)

VIT_B32 = dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
               vision_patch_size=32, context_length=77, vocab_size=49408, transformer_width=512,
               transformer_heads=8, transformer_layers=12, quick_gelu=True, dtype="float32")
RN50 = dict(embed_dim=1024, image_resolution=224, vision_layers=(3, 4, 6, 3), vision_width=64,
            vision_patch_size=None, context_length=77, vocab_size=49408, transformer_width=512,
            transformer_heads=8, transformer_layers=12, quick_gelu=True, dtype="float32")

REQUIRED = ("embed_dim", "image_resolution", "vision_layers", "vision_width", "context_length",
            "vocab_size", "transformer_width", "transformer_heads", "transformer_layers")


def normalize(images: jax.Array) -> jax.Array:
  """RGB [..., 3] in [-1, 1] -> CLIP's input normalisation ((x01 - MEAN) / STD)."""
  mean = jnp.asarray(MEAN, images.dtype)
  std = jnp.asarray(STD, images.dtype)
  return ((images + 1.0) * 0.5 - mean) / std


# ------------------------------------------------------------------------------------ initialisers
def _normal(std: float) -> nn.initializers.Initializer:
  return nn.initializers.normal(stddev=std)


# torch's Linear / Conv default kernel init: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)).
_TORCH_KERNEL = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _torch_bias(fan_in: int) -> nn.initializers.Initializer:
  """torch's Linear / Conv default bias init, U(+-1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


# -------------------------------------------------------------------------------------------- layers
def _ln(x: jax.Array, dtype: Any, name: Optional[str] = None, module: Optional[nn.Module] = None
        ) -> jax.Array:
  """torch LayerNorm (eps 1e-5) in float32 with params {"scale", "bias"} under `name` (or the
  setup-bound `module`), the result in `dtype` (OpenAI's fp16-safe LayerNorm)."""
  ln = module or nn.LayerNorm(epsilon=1e-5, dtype=jnp.float32, param_dtype=jnp.float32, name=name)
  return ln(x.astype(jnp.float32)).astype(dtype)


def quick_gelu(x: jax.Array) -> jax.Array:
  """OpenAI's QuickGELU, x * sigmoid(1.702 x)."""
  return x * jax.nn.sigmoid(1.702 * x)


class SelfAttention(nn.Module):
  """torch.nn.MultiheadAttention(width, heads) as self-attention on batch-first [B, T, W] inputs.

  One fused "in_proj" (kernel [W, 3W] = in_proj_weight^T: q, k, v in that order, heads contiguous),
  softmax(q k^T / sqrt(W / heads)) v in float32 logits, "out_proj". Causal: token t attends to
  tokens <= t (OpenAI's triu(-inf) additive mask)."""
  width: int
  heads: int
  causal: bool = False
  in_std: Optional[float] = None     # None: xavier-uniform (torch's default)
  out_std: Optional[float] = None    # None: torch Linear default
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, t, w = x.shape
    in_init = nn.initializers.xavier_uniform() if self.in_std is None else _normal(self.in_std)
    out_init = _TORCH_KERNEL if self.out_std is None else _normal(self.out_std)
    qkv = Dense(3 * w, dtype=self.dtype, kernel_init=in_init, bias_init=nn.initializers.zeros,
                name="in_proj")(x)
    q, k, v = jnp.moveaxis(qkv.reshape(b, t, 3, self.heads, w // self.heads), 2, 0)
    y = jax.nn.dot_product_attention(q, k, v, is_causal=self.causal, implementation=None)
    return Dense(w, dtype=self.dtype, kernel_init=out_init, bias_init=nn.initializers.zeros,
                 name="out_proj")(y.reshape(b, t, w))


class ResidualAttentionBlock(nn.Module):
  """x + attn(ln_1(x)); x + c_proj(act(c_fc(ln_2(x)))) (MLP width 4 W)."""
  width: int
  heads: int
  causal: bool
  quick_gelu: bool
  init_stds: Optional[tuple[float, float, float]] = None   # (attn, proj, fc) or torch defaults
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    w = self.width
    attn_std, proj_std, fc_std = self.init_stds or (None, None, None)
    y = _ln(x, self.dtype, "ln_1")
    x = x + SelfAttention(w, self.heads, self.causal, attn_std, proj_std, self.dtype, name="attn")(y)
    y = _ln(x, self.dtype, "ln_2")
    y = _Mlp(w, self.quick_gelu, fc_std, proj_std, self.dtype, name="mlp")(y)
    return x + y


class _Mlp(nn.Module):
  width: int
  quick_gelu: bool
  fc_std: Optional[float]
  proj_std: Optional[float]
  dtype: Any

  @nn.compact
  def __call__(self, x):
    w = self.width
    h = Dense(4 * w, dtype=self.dtype, bias_init=_torch_bias(w),
              kernel_init=_TORCH_KERNEL if self.fc_std is None else _normal(self.fc_std),
              name="c_fc")(x)
    h = quick_gelu(h) if self.quick_gelu else nn.gelu(h, approximate=False)
    return Dense(w, dtype=self.dtype, bias_init=_torch_bias(4 * w),
                 kernel_init=_TORCH_KERNEL if self.proj_std is None else _normal(self.proj_std),
                 name="c_proj")(h)


class Transformer(nn.Module):
  """`layers` ResidualAttentionBlocks ("resblocks_i") on [B, T, W]."""
  width: int
  layers: int
  heads: int
  causal: bool
  quick_gelu: bool
  openai_init: bool = False   # the text transformer's initialize_parameters stds
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    stds = None
    if self.openai_init:
      stds = (self.width ** -0.5, self.width ** -0.5 * (2 * self.layers) ** -0.5,
              (2 * self.width) ** -0.5)
    for i in range(self.layers):
      x = ResidualAttentionBlock(self.width, self.heads, self.causal, self.quick_gelu, stds,
                                 self.dtype, name=f"resblocks_{i}")(x)
    return x


class VisionTransformer(nn.Module):
  """OpenAI's VisionTransformer: images [B, R, R, 3] -> [B, output_dim]."""
  input_resolution: int
  patch_size: int
  width: int
  layers: int
  heads: int
  output_dim: int
  quick_gelu: bool
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    p, w = self.patch_size, self.width
    scale = w ** -0.5
    x = Conv(w, (p, p), strides=p, padding="VALID", use_bias=False, dtype=self.dtype,
             kernel_init=_TORCH_KERNEL, name="conv1")(x.astype(self.dtype))
    b = x.shape[0]
    x = x.reshape(b, -1, w)                                  # grid row-major, as torch's reshape
    cls = self.param("class_embedding", _normal(scale), (w,), jnp.float32)
    pos = self.param("positional_embedding", _normal(scale),
                     ((self.input_resolution // p) ** 2 + 1, w), jnp.float32)
    x = jnp.concatenate([jnp.broadcast_to(cls.astype(self.dtype), (b, 1, w)), x], axis=1)
    x = x + pos.astype(self.dtype)
    x = _ln(x, self.dtype, "ln_pre")
    x = Transformer(w, self.layers, self.heads, False, self.quick_gelu, dtype=self.dtype,
                    name="transformer")(x)
    x = _ln(x[:, 0], self.dtype, "ln_post")
    proj = self.param("proj", _normal(scale), (w, self.output_dim), jnp.float32)
    return x @ proj.astype(self.dtype)


def _avg_pool(x: jax.Array, s: int) -> jax.Array:
  """torch AvgPool2d(s) (kernel = stride = s, no padding, floor)."""
  return nn.avg_pool(x, (s, s), strides=(s, s), padding="VALID") if s > 1 else x


def _batch_norm(train: bool, dtype: Any, name: str, scale_init=nn.initializers.ones) -> BatchNorm:
  """torch BatchNorm2d (momentum 0.1, i.e. flax momentum 0.9; eps 1e-5): batch statistics and a
  running-average update when `train`, the running averages otherwise."""
  return BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
                   scale_init=scale_init, name=name)


class Bottleneck(nn.Module):
  """OpenAI's anti-aliased Bottleneck (expansion 4): [B, H, W, inplanes] -> [B, H/s, W/s, 4 planes]."""
  planes: int
  stride: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    bn = lambda name, init=nn.initializers.ones: _batch_norm(train, self.dtype, name, init)
    conv = lambda c, k, name: Conv(c, (k, k), padding=((k // 2, k // 2),) * 2, use_bias=False,
                                   dtype=self.dtype, kernel_init=_TORCH_KERNEL, name=name)
    out = nn.relu(bn("bn1")(conv(self.planes, 1, "conv1")(x)))
    out = nn.relu(bn("bn2")(conv(self.planes, 3, "conv2")(out)))
    out = _avg_pool(out, self.stride)
    out = bn("bn3", nn.initializers.zeros)(conv(4 * self.planes, 1, "conv3")(out))
    if self.stride > 1 or x.shape[-1] != 4 * self.planes:
      x = bn("downsample_1")(conv(4 * self.planes, 1, "downsample_0")(_avg_pool(x, self.stride)))
    return nn.relu(out + x)


class AttentionPool2d(nn.Module):
  """OpenAI's AttentionPool2d: [B, S, S, C] -> [B, output_dim], the output of the mean token of
  one multi-head attention over [mean; pixels] + positional embedding (separate q/k/v projections)."""
  spacial_dim: int
  heads: int
  output_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, c = x.shape[0], x.shape[-1]
    x = x.reshape(b, -1, c)
    x = jnp.concatenate([x.mean(axis=1, keepdims=True, dtype=jnp.float32).astype(x.dtype), x], 1)
    pos = self.param("positional_embedding", _normal(c ** -0.5), (self.spacial_dim ** 2 + 1, c),
                     jnp.float32)
    x = x + pos.astype(x.dtype)
    std = c ** -0.5   # initialize_parameters: c_proj.in_features ** -0.5 for all four
    proj = lambda n, name: Dense(n, dtype=self.dtype, kernel_init=_normal(std),
                                 bias_init=_torch_bias(c), name=name)
    hd = c // self.heads
    q = proj(c, "q_proj")(x[:, :1]).reshape(b, 1, self.heads, hd)   # only the mean token's output
    k = proj(c, "k_proj")(x).reshape(b, -1, self.heads, hd)
    v = proj(c, "v_proj")(x).reshape(b, -1, self.heads, hd)
    y = jax.nn.dot_product_attention(q, k, v, implementation=None).reshape(b, c)
    return proj(self.output_dim, "c_proj")(y)


class ModifiedResNet(nn.Module):
  """OpenAI's ModifiedResNet: images [B, R, R, 3] -> [B, output_dim] (R a multiple of 32)."""
  layers: Sequence[int]
  output_dim: int
  heads: int
  input_resolution: int = 224
  width: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    w = self.width
    x = x.astype(self.dtype)
    for i, c in enumerate((w // 2, w // 2, w)):
      x = Conv(c, (3, 3), strides=2 if i == 0 else 1, padding=((1, 1), (1, 1)), use_bias=False,
               dtype=self.dtype, kernel_init=_TORCH_KERNEL, name=f"conv{i + 1}")(x)
      x = nn.relu(_batch_norm(train, self.dtype, f"bn{i + 1}")(x))
    x = _avg_pool(x, 2)
    for s, blocks in enumerate(self.layers):
      for j in range(blocks):
        x = Bottleneck(w * 2 ** s, 2 if (s > 0 and j == 0) else 1, self.dtype,
                       name=f"layer{s + 1}_{j}")(x, train)
    return AttentionPool2d(self.input_resolution // 32, self.heads, self.output_dim, self.dtype,
                           name="attnpool")(x)


# ----------------------------------------------------------------------------------------------- CLIP
class CLIP(nn.Module):
  """OpenAI's CLIP; build it with `from_config`. See the module docstring for the interface."""
  embed_dim: int
  image_resolution: int
  vision_layers: Any            # int: ViT depth; 4-tuple: ResNet stage depths
  vision_width: int
  vision_patch_size: Optional[int]
  context_length: int
  vocab_size: int
  transformer_width: int
  transformer_heads: int
  transformer_layers: int
  quick_gelu: bool = True
  vision_heads: Optional[int] = None
  text_pool: str = "argmax"     # "argmax" (OpenAI: EOT has the largest id) | "last" (last non-zero)
  dtype: Any = jnp.float32

  @property
  def is_resnet(self) -> bool:
    return isinstance(self.vision_layers, (tuple, list))

  def setup(self):
    heads = self.vision_heads
    if self.is_resnet:
      self.visual = ModifiedResNet(tuple(self.vision_layers), self.embed_dim,
                                   heads or self.vision_width * 32 // 64, self.image_resolution,
                                   self.vision_width, self.dtype)
    else:
      self.visual = VisionTransformer(self.image_resolution, self.vision_patch_size,
                                      self.vision_width, self.vision_layers,
                                      heads or self.vision_width // 64, self.embed_dim,
                                      self.quick_gelu, self.dtype)
    w = self.transformer_width
    self.transformer = Transformer(w, self.transformer_layers, self.transformer_heads, True,
                                   self.quick_gelu, openai_init=True, dtype=self.dtype)
    self.token_embedding = nn.Embed(self.vocab_size, w, dtype=self.dtype,
                                    embedding_init=_normal(0.02))
    self.positional_embedding = self.param("positional_embedding", _normal(0.01),
                                           (self.context_length, w), jnp.float32)
    self.ln_final = nn.LayerNorm(epsilon=1e-5, dtype=jnp.float32, param_dtype=jnp.float32)
    self.text_projection = self.param("text_projection", _normal(w ** -0.5), (w, self.embed_dim),
                                      jnp.float32)
    self.logit_scale = self.param("logit_scale", nn.initializers.constant(np.log(1 / 0.07)), (),
                                  jnp.float32)

  def encode_image(self, images: jax.Array, train: bool = False) -> jax.Array:
    r = self.image_resolution
    if images.ndim != 4 or images.shape[1:] != (r, r, 3):
      raise ValueError(f"CLIP.encode_image expects [B, {r}, {r}, 3] images (image_resolution={r}), "
                       f"got {images.shape}.")
    if self.is_resnet:
      return self.visual(images, train)
    return self.visual(images)

  def encode_text(self, tokens: jax.Array) -> jax.Array:
    if tokens.ndim != 2 or tokens.shape[1] != self.context_length:
      raise ValueError(f"CLIP.encode_text expects int tokens [B, {self.context_length}] "
                       f"(context_length), got {tokens.shape}.")
    x = self.token_embedding(tokens) + self.positional_embedding.astype(self.dtype)
    x = self.transformer(x)
    if self.text_pool == "last":   # the last non-padding token
      eot = tokens.shape[1] - 1 - jnp.argmax((tokens != 0)[:, ::-1], axis=-1)
    else:                          # the EOT token (the largest id)
      eot = jnp.argmax(tokens, axis=-1)
    x = x[jnp.arange(x.shape[0]), eot]
    x = _ln(x, self.dtype, module=self.ln_final)
    return x @ self.text_projection.astype(self.dtype)

  def __call__(self, images: jax.Array, tokens: jax.Array, train: bool = False):
    return self.encode_image(images, train), self.encode_text(tokens), self.logit_scale


def _get(cfg: Mapping, key: str, default=None):
  try:
    value = cfg[key]
  except (KeyError, AttributeError):
    return default
  return default if value is None else value


def from_config(model_cfg: Mapping) -> CLIP:
  """CLIP from a dict / ConfigDict with OpenAI build_model's names (see the module docstring).
  ConfigError naming the key for a missing or inconsistent value."""
  missing = [k for k in REQUIRED if _get(model_cfg, k) is None]
  if missing:
    raise ConfigError(f"config.model is missing {missing} for CLIP; see jaxgen.models.clip.VIT_B32 "
                      "for a complete example.")
  layers = model_cfg["vision_layers"]
  resnet = isinstance(layers, (tuple, list))
  if resnet and len(layers) != 4:
    raise ConfigError(f"config.model.vision_layers={tuple(layers)}: a ResNet needs 4 stage depths "
                      "(e.g. (3, 4, 6, 3)); an int gives a ViT.")
  res, width = int(model_cfg["image_resolution"]), int(model_cfg["vision_width"])
  patch = _get(model_cfg, "vision_patch_size")
  vheads = _get(model_cfg, "vision_heads") or (width * 32 // 64 if resnet else width // 64)
  tw, th = int(model_cfg["transformer_width"]), int(model_cfg["transformer_heads"])
  if resnet and res % 32:
    raise ConfigError(f"config.model.image_resolution={res} must be a multiple of 32 for a ResNet.")
  if not resnet and (not patch or res % int(patch)):
    raise ConfigError(f"config.model.vision_patch_size={patch} must divide image_resolution={res}.")
  feat = width * 32 if resnet else width
  if vheads < 1 or feat % vheads:
    raise ConfigError(f"config.model.vision_heads={vheads} must divide the vision attention width "
                      f"{feat}; set config.model.vision_heads.")
  if th < 1 or tw % th:
    raise ConfigError(f"config.model.transformer_heads={th} must divide transformer_width={tw}.")
  pool = _get(model_cfg, "text_pool") or "argmax"
  if pool not in ("argmax", "last"):
    raise ConfigError(f"config.model.text_pool={pool!r} is unknown; use 'argmax' (CLIP's BPE "
                      "tokenizer, OpenAI's rule) or 'last' (the last non-padding token).")
  return CLIP(embed_dim=int(model_cfg["embed_dim"]), image_resolution=res,
              vision_layers=tuple(int(n) for n in layers) if resnet else int(layers),
              vision_width=width, vision_patch_size=None if resnet else int(patch),
              context_length=int(model_cfg["context_length"]),
              vocab_size=int(model_cfg["vocab_size"]), transformer_width=tw, transformer_heads=th,
              transformer_layers=int(model_cfg["transformer_layers"]),
              quick_gelu=bool(_get(model_cfg, "quick_gelu", True)),
              text_pool=pool, vision_heads=int(vheads), dtype=parse_dtype(_get(model_cfg, "dtype", "float32")))


def abstract_variables(model_cfg: Mapping) -> dict:
  """The model's variables ({"params"[, "batch_stats"]}) as ShapeDtypeStructs (nothing computed)."""
  model = from_config(model_cfg)
  images = jax.ShapeDtypeStruct((1, model.image_resolution, model.image_resolution, 3), jnp.float32)
  tokens = jax.ShapeDtypeStruct((1, model.context_length), jnp.int32)
  return jax.eval_shape(model.init, jax.random.key(0), images, tokens)


def param_count(model_cfg: Mapping) -> int:
  """Number of parameters (BatchNorm running statistics excluded, as torch's parameters())."""
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract_variables(model_cfg)["params"]))
