"""CLIP (Radford et al. 2021, arXiv:2103.00020): contrastive image-text pre-training.

Batches hold "image" float [B, R, R, 3] in [-1, 1] and "caption_tokens" int32 [B, L] (0 = padding).
The image and text towers (jaxgen.models.clip) map them to embeddings; the loss is the symmetric
InfoNCE of the paper's Figure 3 over the *global* batch, with a learned temperature:

  logits = exp(t) * normalize(I) @ normalize(T).T          [B, B], t initialised to log(1 / 0.07)
  loss   = (CE(logits, arange(B)) + CE(logits.T, arange(B))) / 2

computed in the memory-efficient form of open_clip's `ClipLoss(local_loss=True,
gather_with_grad=True)`: the features are all-gathered over the mesh's batch axes (gradients flow
back through the gather), and each device computes only its local rows of the logits against all
B columns (B/n x B instead of B x B), so the total equals the single-device loss on the whole batch.
After each optimizer step t is clamped to [0, log(100)] (the scale exp(t) <= 100), as OpenAI's
training and open_clip's `logit_scale.clamp_(0, math.log(100))`.

Config (besides data / train / optim):
  config.model      jaxgen.models.clip.from_config's keys (OpenAI's build_model names): embed_dim,
                    image_resolution, vision_layers (int = ViT, 4-tuple = modified ResNet),
                    vision_width, vision_patch_size, context_length, vocab_size, transformer_width,
                    transformer_heads, transformer_layers, quick_gelu, dtype
  config.optim      AdamW (the paper: b1 0.9, b2 0.98, eps 1e-6, wd 0.2, cosine with warm-up) with no
                    decay on gains, biases, logit_scale and 1-d embeddings (`no_decay_rules`).
Metrics: loss, logit_scale (exp(t), the scale), image_to_text_acc / text_to_image_acc (in-batch
top-1 over the global batch). Evaluators read `embed_images` / `embed_texts` (jaxgen.metrics.contrastive).
"""
import math
from typing import Optional

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import PartitionSpec as P

from jaxgen import optim, parallel
from jaxgen.data import text
from jaxgen.methods.base import Batch, ConfigError, Method
from jaxgen.state import TrainState, jit_once

INIT_LOGIT_SCALE = math.log(1 / 0.07)
MAX_LOGIT_SCALE = math.log(100.0)


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  x = x.astype(jnp.float32)
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def _local_terms(image: jax.Array, text: jax.Array, all_image: jax.Array, all_text: jax.Array,
                 scale: jax.Array, offset: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Sums over the local rows (b of them, global positions offset..offset+b) of the two cross
  entropies and the two in-batch hits, against all columns."""
  b = image.shape[0]
  labels = offset + jnp.arange(b)
  per_image = scale * image @ all_text.T   # [b, B]
  per_text = scale * text @ all_image.T    # [b, B]
  ce = lambda logits: -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1)[:, 0]
  loss_sum = jnp.sum(ce(per_image) + ce(per_text)) / 2
  hits = lambda logits: jnp.sum((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
  return loss_sum, hits(per_image), hits(per_text)


def contrastive_loss(image_features: jax.Array, text_features: jax.Array, logit_scale: jax.Array,
                     mesh: Optional[jax.sharding.Mesh] = None) -> tuple[jax.Array, dict]:
  """The symmetric InfoNCE over the global batch.

  Args:
    image_features, text_features: float [B, D] (normalised here), rows split over the mesh's batch
      axes when `mesh` is given.
    logit_scale: the raw log-temperature parameter t (scale = exp(t)), scalar.
    mesh: None = the plain full-batch loss on one device; else open_clip's local-loss form under
      shard_map over parallel.BATCH_AXES (B must divide by their size).
  Returns: (loss float32 scalar, {"image_to_text_acc", "text_to_image_acc"}).
  """
  image, text = l2_normalize(image_features), l2_normalize(text_features)
  scale = jnp.exp(logit_scale.astype(jnp.float32))
  n = image.shape[0]
  if mesh is None or mesh.shape["data"] * mesh.shape["fsdp"] == 1:
    loss_sum, hi, ht = _local_terms(image, text, image, text, scale, jnp.int32(0))
  else:
    axes = parallel.BATCH_AXES

    def local(image, text, scale):
      all_image = jax.lax.all_gather(image, axes, tiled=True)   # [B, D]; its transpose sums grads
      all_text = jax.lax.all_gather(text, axes, tiled=True)
      offset = jax.lax.axis_index(axes) * image.shape[0]
      terms = _local_terms(image, text, all_image, all_text, scale, offset)
      return tuple(jax.lax.psum(t, axes) for t in terms)

    loss_sum, hi, ht = jax.shard_map(local, mesh=mesh, in_specs=(P(axes), P(axes), P()),
                                     out_specs=(P(), P(), P()))(image, text, scale)
  return loss_sum / n, {"image_to_text_acc": hi / n, "text_to_image_acc": ht / n}


def no_decay_rules(model_cfg) -> ml_collections.ConfigDict:
  """config.optim.rules exempting what open_clip's `exclude` rule exempts (p.ndim < 2, "bn", "ln",
  "bias", "logit_scale"): gains and biases (optim.NO_DECAY_ON_BIAS_AND_NORM, added by
  exclude_bias_and_norm=True), plus the ViT's 1-d class embedding. 2-d positional and token
  embeddings keep their decay there, and so here."""
  rules = ml_collections.ConfigDict()
  if isinstance(model_cfg.vision_layers, int):
    rules.class_embedding = ml_collections.ConfigDict(dict(pattern=r"class_embedding$",
                                                           weight_decay=False))
  return rules


class CLIP(Method):
  """Contrastive image-text training; see the module docstring for the config it reads."""
  can_sample = False

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    self.validate()
    from jaxgen.models import clip as models  # pylint: disable=g-import-not-at-top
    self.models = models
    self.model = models.from_config(config.model)
    self.tx = optim.make_optimizer(config.optim, config.train.num_steps)

  def validate(self) -> None:
    c, m = self.config, self.config.model
    if c.data.get("source") not in ("captions", "shapes", "none") and not c.data.get("label_captions"):
      raise ConfigError(f"config.data.source={c.data.get('source')!r} gives no captions: CLIP trains "
                        "on (image, caption) pairs; use source 'captions' or 'shapes', or captions "
                        "from class names (config.data.label_captions='a photo of a {}.').")
    if c.data.channels != 3:
      raise ConfigError(f"config.data.channels={c.data.channels}: CLIP's image towers take RGB "
                        "images (normalised with OpenAI's RGB mean/std); set config.data.channels=3.")
    res = m.image_resolution
    if c.data.image_size != res:
      raise ConfigError(f"config.data.image_size={c.data.image_size} != config.model.image_resolution"
                        f"={res}: the towers' positional embeddings are sized for one resolution; set "
                        f"both to the same value (e.g. 224 for ViT-B/32, 32 for CPU configs).")
    if isinstance(m.vision_layers, int):
      if res % m.vision_patch_size:
        raise ConfigError(f"config.model.image_resolution={res} is not divisible by "
                          f"config.model.vision_patch_size={m.vision_patch_size}; choose a "
                          f"resolution that is a multiple of the patch (e.g. "
                          f"{max(1, res // m.vision_patch_size) * m.vision_patch_size}).")
    # Heads, ResNet depths and strides: checked by jaxgen.models.clip.from_config (in __init__).
    if m.context_length < c.data.caption_max_len:
      raise ConfigError(f"config.model.context_length={m.context_length} is shorter than "
                        f"config.data.caption_max_len={c.data.caption_max_len}: the text tower has "
                        "a position for each token; raise context_length or lower caption_max_len "
                        "(CLIP: 77 both).")
    vocab = text.vocab_size(c.data)
    if m.vocab_size < vocab:
      raise ConfigError(f"config.model.vocab_size={m.vocab_size} is smaller than the tokenizer's "
                        f"{vocab} (config.data.tokenizer={c.data.get('tokenizer', 'bytes')!r}); set "
                        f"config.model.vocab_size={vocab}.")
    if c.data.get("tokenizer", "bytes") != "clip" and m.get("text_pool", "argmax") == "argmax":
      raise ConfigError(f"config.model.text_pool='argmax' pools each caption at its largest token "
                        f"id, which is CLIP's end token only with config.data.tokenizer='clip' (here "
                        f"{c.data.get('tokenizer', 'bytes')!r}: the caption's largest byte); set "
                        "config.model.text_pool='last' or config.data.tokenizer='clip'.")
    if c.train.get("ema_decay", 0.0):
      raise ConfigError(f"config.train.ema_decay={c.train.ema_decay}: CLIP keeps no EMA (nor does "
                        "the paper); set it to 0.")
    optim.validate_optimizer(c.optim, c.train.num_steps)

  # ------------------------------------------------------------------------------------- state
  def init(self, rng: jax.Array, example_batch: Batch) -> TrainState:
    image = jnp.zeros((1, *example_batch["image"].shape[1:]), jnp.float32)
    tokens = self._tokens(jnp.ones((1, example_batch["caption_tokens"].shape[1]), jnp.int32))
    variables = dict(jit_once(self.model.init)(rng, image, tokens))
    params = variables.pop("params")
    return TrainState.create(params=params, opt_state=self.tx.init(params), rng=rng,
                             model_state=variables)

  def _tokens(self, tokens: jax.Array) -> jax.Array:
    """Captions [B, L] zero-padded to the text tower's context_length (>= L, validated)."""
    pad = self.config.model.context_length - tokens.shape[1]
    return jnp.pad(tokens, ((0, 0), (0, pad))) if pad else tokens

  def train_step(self, state: TrainState, batch: Batch, rng: jax.Array) -> tuple[TrainState, dict]:
    del rng  # no dropout, no noise
    mesh = parallel.create_mesh(self.config.mesh)   # the loop's mesh (same devices, same order)
    images = self.models.normalize(batch["image"])
    tokens = self._tokens(batch["caption_tokens"])

    def loss_fn(params):
      variables = {"params": params, **state.model_state}
      if state.model_state:   # the ResNet tower's BatchNorm: batch statistics, updated running ones
        (image, text, t), model_state = self.model.apply(variables, images, tokens, train=True,
                                                         mutable=list(state.model_state))
      else:
        (image, text, t), model_state = self.model.apply(variables, images, tokens), {}
      loss, aux = contrastive_loss(image, text, t, mesh)
      return loss, (aux, model_state)

    (loss, (aux, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    params = {**params, "logit_scale": jnp.clip(params["logit_scale"], 0.0, MAX_LOGIT_SCALE)}
    metrics = {"loss": loss, "logit_scale": jnp.exp(params["logit_scale"]), **aux,
               "grad_norm": optax.tree.norm(grads)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                         model_state=model_state), metrics

  # ---------------------------------------------------------------------------------- features
  def embed_images(self, state: TrainState, batch: Batch) -> jax.Array:
    """L2-normalised image embeddings float32 [B, embed_dim] of batch["image"] ([-1, 1] NHWC)."""
    images = self.models.normalize(batch["image"])
    return l2_normalize(self.model.apply({"params": self.sampling_params(state), **state.model_state},
                                         images, method="encode_image"))

  def embed_texts(self, state: TrainState, batch: Batch) -> jax.Array:
    """L2-normalised text embeddings float32 [B, embed_dim] of batch["caption_tokens"]."""
    return l2_normalize(self.model.apply({"params": self.sampling_params(state)},
                                         self._tokens(batch["caption_tokens"]), method="encode_text"))

  def logit_scale(self, state: TrainState) -> jax.Array:
    """exp(t), the learned scale of the logits (<= 100)."""
    return jnp.exp(self.sampling_params(state)["logit_scale"])

  def timed_functions(self) -> dict:
    """Image and text encoding, timed by `--mode benchmark` (images/s, texts/s)."""
    return {"image_encode": self.embed_images, "text_encode": self.embed_texts}

  def sample(self, state, rng, num, cond=None):
    raise NotImplementedError("CLIP draws no images (can_sample=False).")



# ------------------------------------------------------------------------------------- configs
TINY = dict(embed_dim=64, image_resolution=32, vision_layers=2, vision_width=64, vision_patch_size=8,
            context_length=40, vocab_size=text.VOCAB_SIZE, transformer_width=64,
            transformer_heads=2, transformer_layers=2, quick_gelu=True, text_pool="last")


def base_config(arch: dict) -> ml_collections.ConfigDict:
  """A CLIP run config for architecture `arch` (jaxgen.models.clip.VIT_B32 / RN50 / TINY) with the
  paper's optimizer (Radford et al. 2021, Sec. 2.5 and Table 18-20: AdamW b1 0.9, b2 0.98, eps 1e-6,
  decoupled weight decay 0.2 except on gains / biases, cosine schedule after a 2000-step warm-up);
  configs/clip/*.py set the data, batch, lr and steps."""
  from jaxgen.configs import base_config as jaxgen_base  # pylint: disable=g-import-not-at-top
  c = jaxgen_base()
  c.method = "clip"
  # Every key spelled out (0 = the model's default), so that the command line can override them.
  c.model = ml_collections.ConfigDict(dict(vision_patch_size=0, vision_heads=0, quick_gelu=True,
                                           text_pool="argmax", dtype="float32"))
  c.model.update(arch)
  c.data.image_size = arch["image_resolution"]
  c.data.channels = 3
  c.data.caption_max_len = arch["context_length"]
  c.optim = ml_collections.ConfigDict(dict(
      name="adamw", lr=5e-4, b1=0.9, b2=0.98, eps=1e-6, weight_decay=0.2, schedule="cosine",
      warmup_steps=2000, final_lr_frac=0.0, grad_clip=0.0, exclude_bias_and_norm=True))
  c.optim.rules = no_decay_rules(c.model)
  c.train.sample_every = 0          # CLIP draws no images
  c.train.num_samples = 0
  c.eval.num_samples = 0
  return c


def make_cpu(c: ml_collections.ConfigDict, steps: int, batch: int) -> None:
  """Sizes a config for CPU runs: `steps` steps of `batch`, lr 1e-3 with a 5 % warm-up, frequent logs."""
  c.train.batch_size = batch
  c.train.num_steps = steps
  c.train.log_every = max(1, min(50, steps // 10))
  c.train.ckpt_every = steps
  c.train.eval_every = 0
  c.optim.lr = 1e-3
  c.optim.warmup_steps = max(1, steps // 20)
  c.eval.batch_size = 2 * batch
  c.eval.num_examples = 10 * batch
  c.benchmark.batch_size = batch


def paper_config(arch: dict, b2: float, eps: float, batch: int) -> ml_collections.ConfigDict:
  """The paper's run of `arch` (Tables 18-20): lr 5e-4, 32 epochs of 400M pairs at `batch`, AdamW
  b2 / eps (ViT 0.98 / 1e-6, ResNet 0.999 / 1e-8), bfloat16 compute, the BPE tokenizer, captions
  from a folder (config.data.path)."""
  c = base_config(arch)
  c.data.source = "captions"
  c.data.tokenizer = "clip"
  c.optim.lr = 5e-4
  c.optim.b2 = b2
  c.optim.eps = eps
  c.train.batch_size = batch
  c.train.num_steps = 32 * 400_000_000 // batch
  c.train.log_every = 100
  c.train.ckpt_every = 2000
  c.model.dtype = "bfloat16"
  c.benchmark.batch_size = 256
  return c


def label_caption_config(tfds_name: str, caption: str, templates: str, steps: int,
                         tiny: bool) -> ml_collections.ConfigDict:
  """A CPU-sized CLIP (TINY) on a labelled TFDS dataset with captions made from its class names
  (`caption`, e.g. "a photo of a {}."), zero-shot evaluated with the named prompt `templates`."""
  c = base_config(TINY)
  c.data.source = "tfds"
  c.data.name = tfds_name
  c.data.num_classes = 10
  c.data.label_captions = caption
  make_cpu(c, steps=steps, batch=64)
  c.eval.evaluators = ("zero_shot",)
  c.eval.zero_shot_templates = templates
  if tiny:
    make_cpu(c, steps=20, batch=16)
  return c
