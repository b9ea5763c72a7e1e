"""Denoising diffusion (DDPM, improved DDPM objectives, DDIM sampling, guidance) and its noisy classifier.

Diffusion ("ddpm" in the registry): a U-Net trained to predict eps, x0 or v of x_t ~ q(x_t | x_0) at a
uniform timestep (DDPM's L_simple: per-pixel mean squared error). Sampling uses the EMA weights, with
DDPM's ancestral sampler or DDIM (config.sample), optionally classifier-free guidance (a class-
conditional model trained with label dropout) or classifier guidance (a NoisyClassifier's gradient).
eval_step gives DDPM's variational bound in bits/dim and the training loss, per example.

NoisyClassifier ("noisy_classifier"): a classifier of x_t and t trained with cross-entropy on the same
forward process, for classifier guidance.

Config sections: model (U-Net or classifier fields), optim (jaxgen.optim), diffusion, sample, eval;
defaults and meanings in jaxgen/diffusion/defaults.py.
"""
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxgen import optim, pretrained
from jaxgen.diffusion import guidance, process as process_lib, samplers
from jaxgen.methods.base import Batch, ConfigError, Method, cycling_labels
from jaxgen.models.noisy_classifier import classifier_from_config
from jaxgen.models.unet import unet_from_config
from jaxgen.state import TrainState, ema_decay, ema_init


def _check_process_config(config: ml_collections.ConfigDict) -> None:
  d = config.diffusion
  if d.schedule not in process_lib.SCHEDULES:
    raise ConfigError(f"config.diffusion.schedule={d.schedule!r}; use one of {process_lib.SCHEDULES}.")
  if d.objective not in process_lib.OBJECTIVES:
    raise ConfigError(f"config.diffusion.objective={d.objective!r}; use one of {process_lib.OBJECTIVES}.")
  if d.timesteps < 2:
    raise ConfigError(f"config.diffusion.timesteps={d.timesteps} must be >= 2 (DDPM uses 1000).")
  if d.schedule == "linear" and not 0 < d.beta_start <= d.beta_end < 1:
    raise ConfigError(f"config.diffusion.beta_start={d.beta_start}, beta_end={d.beta_end}: need "
                      "0 < beta_start <= beta_end < 1 (DDPM: 1e-4, 0.02).")
  levels = len(config.model.ch_mult)
  if config.data.image_size % 2 ** (levels - 1):
    raise ConfigError(f"config.data.image_size={config.data.image_size} is not divisible by "
                      f"2**(len(config.model.ch_mult)-1) = {2 ** (levels - 1)}; use image_size 32 for "
                      "28x28 datasets or fewer levels in config.model.ch_mult.")
  for m in config.model.ch_mult:
    if (config.model.ch * m) % config.model.get("num_groups", 32):
      raise ConfigError(f"config.model.ch * ch_mult = {config.model.ch * m} is not divisible by "
                        f"config.model.num_groups={config.model.get('num_groups', 32)}.")


class Diffusion(Method):
  """DDPM-family diffusion model; see the module docstring."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    self.validate()   # the objects below cannot be built from bad values; fail with the fix instead
    self.process = process_lib.Process.from_config(config.diffusion)
    d = config.diffusion
    self.num_classes = config.data.num_classes if d.class_conditional else 0
    self.model = unet_from_config(config.model, config.data.channels, self.num_classes)
    self.tx = optim.make_optimizer(config.optim, config.train.num_steps)
    self._classifier = None   # the NoisyClassifier method of classifier guidance, built on first use

  def validate(self) -> None:
    c = self.config
    _check_process_config(c)
    d, s = c.diffusion, c.sample
    if d.get("min_snr_gamma", 0.0) < 0:
      raise ConfigError(f"config.diffusion.min_snr_gamma={d.min_snr_gamma} must be >= 0 (0 = DDPM's "
                        "unweighted L_simple; Hang et al. 2023 use 5).")
    if d.var_type not in process_lib.VAR_TYPES:
      raise ConfigError(f"config.diffusion.var_type={d.var_type!r}; use one of {process_lib.VAR_TYPES}.")
    if d.class_conditional and c.data.num_classes <= 0:
      raise ConfigError("config.diffusion.class_conditional=True needs a labelled dataset "
                        f"(config.data.num_classes={c.data.num_classes}); set it or turn it off.")
    if not 0.0 <= d.label_dropout < 1.0:
      raise ConfigError(f"config.diffusion.label_dropout={d.label_dropout} must be in [0, 1).")
    if d.label_dropout > 0 and not d.class_conditional:
      raise ConfigError(f"config.diffusion.label_dropout={d.label_dropout} needs "
                        "config.diffusion.class_conditional=True.")
    if s.guidance_scale != 1.0 and d.label_dropout == 0:
      raise ConfigError(f"config.sample.guidance_scale={s.guidance_scale} needs a model trained with "
                        "label dropout (config.diffusion.label_dropout > 0, e.g. 0.1); or set it to 1.")
    if s.sampler not in ("ddpm", "ddim"):
      raise ConfigError(f"config.sample.sampler={s.sampler!r}; use ddpm or ddim.")
    if s.sampler == "ddim":
      if not 1 <= s.steps <= d.timesteps:
        raise ConfigError(f"config.sample.steps={s.steps} must be in [1, {d.timesteps}] (diffusion.timesteps).")
      if s.skip_type not in samplers.SKIP_TYPES:
        raise ConfigError(f"config.sample.skip_type={s.skip_type!r}; use one of {samplers.SKIP_TYPES}.")
      if s.eta < 0:
        raise ConfigError(f"config.sample.eta={s.eta} must be >= 0 (0 = DDIM, 1 = DDPM-like).")
    if s.classifier_scale:
      if pretrained.part(c, "classifier") is None:
        raise ConfigError(f"config.sample.classifier_scale={s.classifier_scale} needs "
                          "config.pretrained.classifier.workdir (a trained noisy_classifier run); "
                          "or set classifier_scale=0.")
      if c.data.num_classes <= 0:
        raise ConfigError("classifier guidance needs a labelled dataset (config.data.num_classes > 0).")
    if c.eval.vlb_timesteps == 1 or not 0 <= c.eval.vlb_timesteps <= d.timesteps:
      raise ConfigError(f"config.eval.vlb_timesteps={c.eval.vlb_timesteps} must be 0 (all timesteps, "
                        f"the paper's protocol) or in [2, {d.timesteps}].")

  # ---- model evaluation --------------------------------------------------------------------------
  def _apply(self, params, x, t, y, *, train: bool = False, rng: Optional[jax.Array] = None) -> jax.Array:
    rngs = {"dropout": rng} if train else None
    return self.model.apply({"params": params}, x, t, y if self.num_classes else None, train=train,
                            rngs=rngs)

  # ---- Method interface --------------------------------------------------------------------------
  def init(self, rng: jax.Array, example_batch: Batch) -> TrainState:
    x = jnp.zeros(example_batch["image"].shape, jnp.float32)
    b = x.shape[0]
    y = jnp.zeros((b,), jnp.int32) if self.num_classes else None
    params = self.model.init({"params": rng}, x, jnp.zeros((b,), jnp.int32), y, train=False)["params"]
    return TrainState.create(params=params, opt_state=self.tx.init(params), rng=rng,
                             ema_params=ema_init(params, self.config.train))

  def _loss(self, params, batch: Batch, rng: jax.Array, *, train: bool) -> jax.Array:
    """L_simple per example, float32 [B]: mean over pixels of (target - output)^2."""
    x0 = batch["image"].astype(jnp.float32)
    b = x0.shape[0]
    t_rng, n_rng, d_rng, l_rng = jax.random.split(rng, 4)
    t = jax.random.randint(t_rng, (b,), 0, self.process.num_timesteps)
    noise = jax.random.normal(n_rng, x0.shape)
    xt = self.process.q_sample(x0, t, noise)
    y = None
    if self.num_classes:
      y = batch["label"].astype(jnp.int32)
      if train and self.config.diffusion.label_dropout > 0:
        drop = jax.random.bernoulli(l_rng, self.config.diffusion.label_dropout, (b,))
        y = jnp.where(drop, self.num_classes, y)   # the null label
    out = self._apply(params, xt, t, y, train=train, rng=d_rng)
    err = jnp.square(out.astype(jnp.float32) - self.process.target(x0, noise, t))
    err = jnp.mean(err, axis=tuple(range(1, x0.ndim)))
    gamma = self.config.diffusion.get("min_snr_gamma", 0.0)
    return err * self.process.min_snr_weight(t, gamma) if train and gamma > 0 else err

  def train_step(self, state: TrainState, batch: Batch, rng: jax.Array) -> tuple[TrainState, dict]:
    loss_fn = lambda p: jnp.mean(self._loss(p, batch, rng, train=True))  # noqa: E731
    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    decay = ema_decay(self.config.train, state.step, batch["image"].shape[0])
    return (state.apply_gradients(self.tx, grads, decay),
            {"loss": loss, "grad_norm": optax.tree.norm(grads)})

  @property
  def cond_keys(self) -> tuple[str, ...]:
    uses_labels = self.num_classes or self.config.sample.classifier_scale
    return ("label",) if uses_labels else ()

  def default_cond(self, num: int) -> Optional[dict]:
    """Labels cycling through the classes, int32 [num] (for label-conditional sampling)."""
    if not self.cond_keys:
      return None
    return {"label": cycling_labels(num, self.config.data.num_classes)}

  def frozen_parts(self) -> dict:
    """Classifier guidance: the noisy classifier's params (config.pretrained.classifier)."""
    if not self.config.sample.classifier_scale:
      return {}
    method = self._classifier_method()
    example = {"image": jax.ShapeDtypeStruct((1, self.config.data.image_size, self.config.data.image_size,
                                              self.config.data.channels), jnp.float32)}
    return {"classifier": jax.eval_shape(method.init, jax.random.PRNGKey(0), example).params}

  def _classifier_method(self) -> "NoisyClassifier":
    """The NoisyClassifier of the run config.pretrained.classifier names (built from the config
    saved with its checkpoints), checked to share this model's forward process."""
    if self._classifier is None:
      cls_config = pretrained.part_config(self.config, "classifier")
      if cls_config.get("method") != "noisy_classifier":
        raise ConfigError(f"config.pretrained.classifier is a {cls_config.get('method')!r} run; "
                          "classifier guidance needs a noisy_classifier run.")
      ours, theirs = self.config.diffusion, cls_config.diffusion
      for key in ("schedule", "timesteps", "beta_start", "beta_end"):
        if ours[key] != theirs[key]:
          raise ConfigError(f"config.pretrained.classifier was trained with diffusion.{key}="
                            f"{theirs[key]!r} but this model uses {ours[key]!r}: the classifier must "
                            "see the same forward process.")
      self._classifier = NoisyClassifier(cls_config)
    return self._classifier

  def sample(self, state: TrainState, rng: jax.Array, num: int, cond: Optional[Batch] = None) -> jax.Array:
    """`num` images [num, H, W, C] in [-1, 1] with the config's sampler and guidance settings.
    cond: {"label": int32 [num]} (class-conditional or classifier-guided models); None = cycling."""
    s = self.config.sample
    labels = None if cond is None else cond["label"]
    classifier = state.frozen.get("classifier")
    return self.generate(self.sampling_params(state), rng, num, labels,
                         guidance_scale=jnp.float32(s.guidance_scale), eta=jnp.float32(s.eta),
                         classifier_scale=jnp.float32(s.classifier_scale),
                         classifier_params=classifier)

  def generate(self, params, rng: jax.Array, num: int, labels: Optional[jax.Array], *,
               guidance_scale: jax.Array, eta: jax.Array, classifier_scale: jax.Array,
               classifier_params: Any = None, x_T: Optional[jax.Array] = None) -> jax.Array:
    """The sampler with its scalars as (traceable) arguments: jit with `num` static and change
    guidance_scale / eta / classifier_scale without recompiling. classifier_params: the noisy
    classifier's params (an argument, never a constant) when config.sample.classifier_scale != 0.
    x_T: optional starting noise."""
    c = self.config
    shape = (num, c.data.image_size, c.data.image_size, c.data.channels)
    noise_rng, step_rng = jax.random.split(rng)
    if x_T is None:
      x_T = jax.random.normal(noise_rng, shape, jnp.float32)
    if self.cond_keys:
      labels = jnp.asarray(self.default_cond(num)["label"] if labels is None else labels, jnp.int32)

    if self.num_classes and c.diffusion.label_dropout > 0:
      apply = lambda x, t, y: self._apply(params, x, t, y)  # noqa: E731
      model_fn = guidance.classifier_free(apply, labels, self.num_classes, guidance_scale)
    else:
      model_fn = lambda x, t: self._apply(params, x, t, labels if self.num_classes else None)  # noqa: E731

    grad_fn = None
    if c.sample.classifier_scale:
      if classifier_params is None:
        raise ValueError("classifier guidance needs classifier_params (state.frozen['classifier']).")
      module = self._classifier_method().model
      classifier_fn = lambda x, t: module.apply({"params": classifier_params}, x, t, train=False)  # noqa: E731
      grad_fn = guidance.classifier_log_prob_grad(classifier_fn, labels)

    if c.sample.sampler == "ddpm":
      return samplers.ddpm_sample(self.process, model_fn, x_T, step_rng,
                                  var_type=c.diffusion.var_type, clip=c.sample.clip_denoised,
                                  grad_fn=grad_fn, classifier_scale=classifier_scale,
                                  progress=c.sample.get("progress", True))
    timesteps = samplers.ddim_timesteps(self.process.num_timesteps, c.sample.steps, c.sample.skip_type)
    return samplers.ddim_sample(self.process, model_fn, x_T, step_rng, timesteps, eta=eta,
                                clip=c.sample.clip_denoised, grad_fn=grad_fn,
                                classifier_scale=classifier_scale,
                                progress=c.sample.get("progress", True))

  def eval_step(self, state: TrainState, batch: Batch, rng: jax.Array) -> dict:
    """Per example: "bits_per_dim", DDPM's bound L_0 + ... + L_{T-1} + L_T (L_0 the discretised
    decoder) with the sampling (EMA) params, and "loss", the training loss at a random t.
    config.eval.vlb_timesteps = K >= 2 computes L_0 and estimates the other terms' sum from K - 1
    distinct uniform t in [1, T) (unbiased); 0 (or T) sums all T terms."""
    params = self.sampling_params(state)
    x0 = batch["image"].astype(jnp.float32)
    b = x0.shape[0]
    y = batch["label"].astype(jnp.int32) if self.num_classes else None
    num_t = self.process.num_timesteps
    k = self.config.eval.vlb_timesteps or num_t
    t_rng, n_rng, l_rng = jax.random.split(rng, 3)
    # L_0 (the decoder) dominates the bound and is always computed exactly; the other terms are a
    # uniform sample of k - 1 distinct t in [1, T), scaled by (T - 1) / (k - 1).
    ts = jnp.concatenate([jnp.zeros((1,), jnp.int32),
                          1 + jax.random.permutation(t_rng, num_t - 1)[:k - 1].astype(jnp.int32)])
    weight = (num_t - 1) / (k - 1)

    def term(total, t):
      tb = jnp.full((b,), t, jnp.int32)
      xt = self.process.q_sample(x0, tb, jax.random.normal(jax.random.fold_in(n_rng, t), x0.shape))
      out = self._apply(params, xt, tb, y)
      lt = self.process.vlb_term(x0, xt, tb, out, var_type=self.config.diffusion.var_type,
                                 clip=self.config.sample.clip_denoised)
      return total + jnp.where(t == 0, 1.0, weight) * lt, None

    total, _ = jax.lax.scan(term, jnp.zeros((b,), jnp.float32), ts)
    bpd = total + self.process.prior_bpd(x0)
    return {"bits_per_dim": bpd, "loss": self._loss(params, batch, l_rng, train=False)}


class NoisyClassifier(Method):
  """Classifier of (x_t, t) for classifier guidance; config.diffusion gives the forward process
  (use the diffusion model's), config.model the classifier (jaxgen.models.noisy_classifier).
  It draws no samples: train.sample_every, eval.num_samples and eval.metrics must be off."""
  can_sample = False

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    self.validate()
    self.process = process_lib.Process.from_config(config.diffusion)
    self.model = classifier_from_config(config.model, max(config.data.num_classes, 1))
    self.tx = optim.make_optimizer(config.optim, config.train.num_steps)

  def validate(self) -> None:
    _check_process_config(self.config)
    if self.config.data.num_classes < 2:
      raise ConfigError(f"method noisy_classifier needs config.data.num_classes >= 2, got "
                        f"{self.config.data.num_classes}; use a labelled dataset.")

  def init(self, rng: jax.Array, example_batch: Batch) -> TrainState:
    b = example_batch["image"].shape[0]
    x = jnp.zeros(example_batch["image"].shape, jnp.float32)
    params = self.model.init({"params": rng}, x, jnp.zeros((b,), jnp.int32), train=False)["params"]
    return TrainState.create(params=params, opt_state=self.tx.init(params), rng=rng,
                             ema_params=ema_init(params, self.config.train))

  def _per_example(self, params, batch: Batch, rng: jax.Array, *, train: bool):
    """Cross-entropy and correctness at a uniform t, each float32 [B]."""
    x0 = batch["image"].astype(jnp.float32)
    b = x0.shape[0]
    t_rng, n_rng, d_rng = jax.random.split(rng, 3)
    t = jax.random.randint(t_rng, (b,), 0, self.process.num_timesteps)
    xt = self.process.q_sample(x0, t, jax.random.normal(n_rng, x0.shape))
    logits = self.model.apply({"params": params}, xt, t, train=train,
                              rngs={"dropout": d_rng} if train else None)
    labels = batch["label"].astype(jnp.int32)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return loss, (jnp.argmax(logits, -1) == labels).astype(jnp.float32)

  def train_step(self, state: TrainState, batch: Batch, rng: jax.Array) -> tuple[TrainState, dict]:
    def loss_fn(params):
      loss, correct = self._per_example(params, batch, rng, train=True)
      return jnp.mean(loss), jnp.mean(correct)
    (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    decay = ema_decay(self.config.train, state.step, batch["image"].shape[0])
    return state.apply_gradients(self.tx, grads, decay), {"loss": loss, "accuracy": acc}

  def eval_step(self, state: TrainState, batch: Batch, rng: jax.Array) -> dict:
    """Per example at a uniform random t: "loss" (cross-entropy, nats) and "accuracy" (0/1)."""
    loss, correct = self._per_example(self.sampling_params(state), batch, rng, train=False)
    return {"loss": loss, "accuracy": correct}
