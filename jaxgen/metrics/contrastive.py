"""Evaluators of image-text embeddings: zero-shot classification, retrieval recall@k, CLIP score.

The arithmetic (pure numpy on L2-normalised embeddings) is separate from the evaluators that
gather the embeddings, so that it can be tested on hand-built vectors.

  zero_shot   (Radford et al. 2021, Sec. 3.1.4 and OpenAI's "Prompt_Engineering_for_ImageNet"
              notebook): each class name goes through every prompt template, the text embeddings of
              a class are averaged and renormalised; an image's prediction is the class of highest
              cosine. Top-1 / top-5 accuracy over the eval split. Needs a method with
              `embed_images` / `embed_texts` (jaxgen.methods.clip).
              config.eval.zero_shot_classes   class names, () = jaxgen.data.class_names.for_dataset
              config.eval.zero_shot_templates prompt templates with "{}", or a name for
                                              jaxgen.data.prompts.templates (() = "a photo of a {}.")
  retrieval   image -> text and text -> image recall@1/5/10 over the eval split's (image, caption)
              pairs. Rows with identical captions count as matches of each other (datasets such as
              the shapes repeat captions; with distinct captions this is the usual one-to-one recall).
  clip_score  Hessel et al. 2021 (arXiv:2104.08718): CLIPScore = w * max(cos(E_I, E_C), 0), w = 2.5,
              averaged over generated samples and the captions they were conditioned on; also the
              torchmetrics form 100 * max(cos, 0). The CLIP is state.frozen["clip"] when the method
              declares that part (its architecture from the run config.pretrained.clip.workdir
              names, else config.eval.clip_model), else loaded from config.eval.clip (a
              pretrained.part_defaults() entry: workdir of a CLIP run, whose saved config gives the
              architecture and whose model_state the ResNet tower's BatchNorm statistics, or file +
              converter with config.eval.clip_model the architecture).
"""
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxgen.errors import ConfigError
from jaxgen.evaluators import Context, Evaluator

CLIP_SCORE_W = 2.5
DEFAULT_TEMPLATES = ("a photo of a {}.",)


# ----------------------------------------------------------------------------------- arithmetic
def normalize(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, np.float64)
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def class_embeddings(prompt_embeddings: np.ndarray) -> np.ndarray:
  """[C, T, D] embeddings of C classes through T templates -> [C, D]: each class's normalised
  embeddings averaged and renormalised (CLIP's zero-shot classifier weights)."""
  return normalize(normalize(prompt_embeddings).mean(axis=1))


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict:
  """scores [N, C], labels [N] -> {"top{k}": fraction of rows whose label is among the k highest}."""
  order = np.argsort(-scores, axis=1, kind="stable")
  rank = np.argmax(order == np.asarray(labels)[:, None], axis=1)   # 0 = best
  return {f"top{k}": float(np.mean(rank < k)) for k in ks if k <= scores.shape[1]}


def zero_shot_accuracy(image_emb: np.ndarray, class_emb: np.ndarray, labels: np.ndarray,
                       ks: Sequence[int] = (1, 5)) -> dict:
  """Top-k accuracy of classifying images [N, D] by cosine to class embeddings [C, D]."""
  return topk_accuracy(normalize(image_emb) @ normalize(class_emb).T, labels, ks)


def _groups(captions: np.ndarray) -> np.ndarray:
  """int [N]: rows with identical caption (tokens [N, L] or strings [N]) share an id."""
  captions = np.asarray(captions)
  flat = captions.reshape(len(captions), -1) if captions.ndim > 1 else captions[:, None]
  return np.unique(flat, axis=0, return_inverse=True)[1].reshape(-1)


def _recall(scores: np.ndarray, match: np.ndarray, ks: Sequence[int]) -> dict:
  """scores [N, M]; match [N, M] bool (True = a correct item) -> {k: fraction of rows with a correct
  item among their k highest}. Ties are broken by position (stable sort)."""
  order = np.argsort(-scores, axis=1, kind="stable")
  hit = np.take_along_axis(match, order, axis=1)
  first = np.where(hit.any(1), np.argmax(hit, axis=1), scores.shape[1])
  return {k: float(np.mean(first < k)) for k in ks}


def retrieval_recall(image_emb: np.ndarray, text_emb: np.ndarray, captions: Optional[np.ndarray] = None,
                     ks: Sequence[int] = (1, 5, 10)) -> dict:
  """Row i of image_emb [N, D] and text_emb [N, D] is a pair; `captions` (tokens or strings, [N,
  ...]) marks rows with equal captions as matches too (None = one-to-one). Returns
  {"image_to_text_r@k", "text_to_image_r@k"}."""
  n = len(image_emb)
  groups = np.arange(n) if captions is None else _groups(captions)
  match = groups[:, None] == groups[None, :]
  sims = normalize(image_emb) @ normalize(text_emb).T
  out = {f"image_to_text_r@{k}": v for k, v in _recall(sims, match, ks).items()}
  out.update({f"text_to_image_r@{k}": v for k, v in _recall(sims.T, match.T, ks).items()})
  return out


def clip_score(image_emb: np.ndarray, text_emb: np.ndarray, w: float = CLIP_SCORE_W) -> dict:
  """Hessel et al.'s CLIPScore of paired rows: mean of w * max(cos, 0), and the torchmetrics form
  100 * max(cos, 0)."""
  cos = np.sum(normalize(image_emb) * normalize(text_emb), axis=1)
  pos = np.maximum(cos, 0.0)
  return {"clip_score": float(np.mean(w * pos)), "clip_score_100": float(np.mean(100 * pos))}


def _needs_embeddings(config, name: str) -> None:
  from jaxgen import registry  # pylint: disable=g-import-not-at-top
  cls = registry.get_method_class(config.method)
  if not (hasattr(cls, "embed_images") and hasattr(cls, "embed_texts")):
    raise ConfigError(f"config.eval.evaluators includes {name!r}, which needs image and text "
                      f"embeddings, but config.method={config.method!r} has no embed_images / "
                      "embed_texts; use it with a CLIP run (config.method='clip').")


def _embed_tokens(method, state, tokens: np.ndarray, batch_size: int) -> np.ndarray:
  fn = jax.jit(method.embed_texts)
  out = [np.asarray(fn(state, {"caption_tokens": jnp.asarray(tokens[i:i + batch_size])}))
         for i in range(0, len(tokens), batch_size)]
  return np.concatenate(out)


# ----------------------------------------------------------------------------------- evaluators
class ZeroShot(Evaluator):
  """Zero-shot top-1 / top-5 accuracy over the eval split (see the module docstring)."""
  needs_samples = False

  def validate(self) -> None:
    _needs_embeddings(self.config, "zero_shot")
    if not self.config.data.get("num_classes", 0):
      raise ConfigError("config.eval.evaluators includes 'zero_shot' but config.data.num_classes=0: "
                        "zero-shot accuracy needs labelled eval images; use a labelled dataset.")
    self.class_names()
    for t in self.templates():
      if "{}" not in t:
        raise ConfigError(f"config.eval.zero_shot_templates has {t!r}, with no '{{}}' for the class "
                          "name; write e.g. 'a photo of a {}.'.")

  def class_names(self) -> list[str]:
    names = tuple(self.config.eval.get("zero_shot_classes", ()))
    if not names:
      try:
        from jaxgen.data import class_names  # pylint: disable=g-import-not-at-top
        names = tuple(class_names.for_dataset(self.config.data))
      except ImportError:
        names = ()
    if len(names) != self.config.data.num_classes:
      raise ConfigError(f"zero_shot: {len(names)} class names for config.data.num_classes="
                        f"{self.config.data.num_classes}; set config.eval.zero_shot_classes to one "
                        "name per label, in label order.")
    return list(names)

  def templates(self) -> list[str]:
    t = self.config.eval.get("zero_shot_templates", ())
    if isinstance(t, str):
      from jaxgen.data import prompts  # pylint: disable=g-import-not-at-top
      return list(prompts.templates(t))
    return list(t) or list(DEFAULT_TEMPLATES)

  def __call__(self, ctx: Context) -> dict:
    names, templates = self.class_names(), self.templates()
    prompts = [t.format(n) for n in names for t in templates]
    from jaxgen.data import text  # pylint: disable=g-import-not-at-top
    tokens = text.tokenize_captions(self.config.data, prompts)
    text = _embed_tokens(ctx.method, ctx.state, tokens, self.config.eval.batch_size)
    weights = class_embeddings(text.reshape(len(names), len(templates), -1))
    images, fields = ctx.embed(ctx.method.embed_images)
    acc = zero_shot_accuracy(images, weights, fields["label"])
    return {f"zero_shot_{k}": v for k, v in acc.items()}


class Retrieval(Evaluator):
  """Image <-> text recall@1/5/10 over the eval split's captions."""
  needs_samples = False

  def validate(self) -> None:
    _needs_embeddings(self.config, "retrieval")

  def __call__(self, ctx: Context) -> dict:
    feats, fields = ctx.embed(_BothEmbeddings(ctx.method))
    d = feats.shape[1] // 2
    return retrieval_recall(feats[:, :d], feats[:, d:], fields["caption_tokens"])


class _BothEmbeddings:
  """(state, batch) -> [B, 2D] image and text embeddings side by side; hashable by its method, so
  that Context.embed compiles it once per method."""

  def __init__(self, method):
    self.method = method

  def __call__(self, state, batch):
    return jnp.concatenate([self.method.embed_images(state, batch),
                            self.method.embed_texts(state, batch)], axis=1)

  def __hash__(self):
    return hash(("both", id(self.method)))

  def __eq__(self, other):
    return isinstance(other, _BothEmbeddings) and other.method is self.method


class CLIPScore(Evaluator):
  """CLIPScore of generated samples against their caption conditioning."""

  def _entry(self) -> ml_collections.ConfigDict:
    return self.config.eval.get("clip") or ml_collections.ConfigDict()

  def validate(self) -> None:
    e = self._entry()
    if not (e.get("workdir") or e.get("file") or "clip" in (self.config.get("pretrained") or {})):
      raise ConfigError("config.eval.evaluators includes 'clip_score' but no CLIP is given: set "
                        "config.eval.clip.workdir to a CLIP run (or .file + .converter, with "
                        "config.eval.clip_model its architecture), or declare config.pretrained.clip.")
    from jaxgen import pretrained  # pylint: disable=g-import-not-at-top
    p = pretrained.part(self.config, "clip")
    if not e.get("workdir") and not (p and p.workdir) and "clip_model" not in self.config.eval:
      raise ConfigError("clip_score: config.eval.clip_model (the CLIP architecture, e.g. "
                        "jaxgen.models.clip.VIT_B32) is needed unless config.eval.clip.workdir names "
                        "a CLIP run, whose config carries it.")

  def _clip(self, ctx: Context):
    """(model, variables): state.frozen["clip"] when the method declares that part (architecture from
    the run config.pretrained.clip names, else config.eval.clip_model), else loaded from
    config.eval.clip (a CLIP run's sampling params with its BatchNorm statistics, or a file through
    its converter). variables carry "batch_stats" for a ResNet image tower."""
    from jaxgen import pretrained  # pylint: disable=g-import-not-at-top
    from jaxgen.models import clip as models  # pylint: disable=g-import-not-at-top
    frozen = (ctx.state.frozen or {}).get("clip")
    if frozen is not None:
      e = pretrained.part(self.config, "clip") or ml_collections.ConfigDict()
      what = "config.pretrained.clip"
      variables = pretrained.as_variables(frozen)
    else:
      e, what = self._entry(), "config.eval.clip"
      holder = ml_collections.ConfigDict({"pretrained": {"clip": pretrained.part_defaults()}})
      holder.pretrained.clip.update(dict(e))
      variables = pretrained.load_variables(holder, "clip", ctx.mesh)
    model_cfg = (pretrained.run_config(e.workdir, e.get("step", -1), what).model if e.get("workdir")
                 else self.config.eval.clip_model)
    return models.from_config(model_cfg), variables

  def __call__(self, ctx: Context) -> dict:
    from jaxgen.methods import clip as clip_method  # pylint: disable=g-import-not-at-top
    from jaxgen.models import clip as models  # pylint: disable=g-import-not-at-top
    model, variables = self._clip(ctx)
    num = self.config.eval.get("clip_score_num_samples", self.config.eval.num_samples)
    samples, cond = ctx.generate(num, "clip_score")
    if not cond or "caption_tokens" not in cond:
      raise ConfigError("clip_score: the samples carry no caption_tokens conditioning; it scores "
                        "text-conditioned generators.")
    res, length = model.image_resolution, model.context_length

    @jax.jit
    def embed(v, images, tokens):
      if images.shape[1] != res:   # OpenAI's preprocessing: bicubic resize of the square image
        images = jax.image.resize(images, (images.shape[0], res, res, images.shape[3]), "bicubic")
      images = models.normalize(jnp.clip(images, -1, 1))
      tokens = jnp.pad(tokens, ((0, 0), (0, length - tokens.shape[1])))
      return (clip_method.l2_normalize(model.apply(v, images, method="encode_image")),
              clip_method.l2_normalize(model.apply(v, tokens, method="encode_text")))

    bs = self.config.eval.batch_size
    img, txt = zip(*[embed(variables, jnp.asarray(samples[i:i + bs]),
                           jnp.asarray(cond["caption_tokens"][i:i + bs]))
                     for i in range(0, len(samples), bs)])
    return clip_score(np.concatenate(img), np.concatenate(txt))
