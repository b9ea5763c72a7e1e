"""A tiny denoising method used to test the trainer independently of any model family.

It has dropout and input noise (so the per-step RNG matters for resume/multi-process equality), EMA,
an optional NaN at a chosen step, an optional host-side sleep per step (to kill runs mid-way), an
optional frozen "teacher" network of another run (model.teacher_width > 0; jaxgen.pretrained) and an
optional metric computed only every k steps (model.lazy_every).
Config: method="toy_method:ToyDenoiser" (tests/ on sys.path).
"""
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxgen.methods.base import ConfigError, Method
from jaxgen.optim import make_optimizer
from jaxgen.state import TrainState


class _Net(nn.Module):
  channels: int
  width: int = 8

  @nn.compact
  def __call__(self, x, *, train: bool):
    h = nn.relu(nn.Conv(self.width, (3, 3))(x))
    h = nn.Dropout(0.2, deterministic=not train)(h)
    return nn.Conv(self.channels, (3, 3))(h)


class ToyDenoiser(Method):

  def validate(self):
    if self.config.data.image_size % 4:
      raise ConfigError(f"config.data.image_size={self.config.data.image_size} must be a multiple of 4.")

  @property
  def net(self):
    return _Net(self.config.data.channels)

  @property
  def teacher(self):
    return _Net(self.config.data.channels, self.config.model.get("teacher_width", 0))

  def frozen_parts(self):
    if not self.config.model.get("teacher_width", 0):
      return {}
    x = jax.ShapeDtypeStruct((1, 8, 8, self.config.data.channels), jnp.float32)
    return {"teacher": jax.eval_shape(lambda x: self.teacher.init(jax.random.PRNGKey(0), x, train=False), x)["params"]}

  def _teacher(self, state, x):
    """0.1 x the frozen teacher's output (0 without a teacher)."""
    if "teacher" not in state.frozen:
      return 0.0
    return 0.1 * self.teacher.apply({"params": state.frozen["teacher"]}, x, train=False)

  def init(self, rng, example_batch):
    params = self.net.init(rng, example_batch["image"], train=False)["params"]
    tx = make_optimizer(self.config.optim, self.config.train.num_steps)
    ema = params if self.config.train.ema_decay else None
    return TrainState.create(params=params, opt_state=tx.init(params), rng=rng, ema_params=ema)

  def train_step(self, state, batch, rng):
    x = batch["image"]
    noise_rng, drop_rng = jax.random.split(rng)
    noisy = x + 0.5 * jax.random.normal(noise_rng, x.shape)

    def loss_fn(params):
      pred = self.net.apply({"params": params}, noisy, train=True, rngs={"dropout": drop_rng})
      return jnp.mean((pred + self._teacher(state, noisy) - x) ** 2)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    nan_after = self.config.model.get("nan_after", -1)
    if nan_after >= 0:
      loss = jnp.where(state.step >= nan_after, jnp.nan, loss)
    if self.config.model.get("sleep_s", 0.0):
      jax.debug.callback(lambda: time.sleep(self.config.model.sleep_s))
    tx = make_optimizer(self.config.optim, self.config.train.num_steps)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads)}
    lazy = self.config.model.get("lazy_every", 0)
    if lazy:   # a metric only every `lazy` steps (its value: the step), NaN otherwise
      metrics["lazy"] = jnp.where(state.step % lazy == 0, state.step.astype(jnp.float32), jnp.nan)
    return state.apply_gradients(tx, grads, self.config.train.ema_decay), metrics

  @property
  def cond_keys(self):
    """With data.degrade on, a toy super-resolution: samples start from the upsampled low_res."""
    return ("low_res",) if self.config.data.degrade.kind else ()

  def sample(self, state, rng, num, cond=None):
    size, c = self.config.data.image_size, self.config.data.channels
    params = state.ema_params if state.ema_params is not None else state.params
    noise = jax.random.normal(rng, (num, size, size, c))
    if self.cond_keys:   # the upsampled input plus a small learned correction
      f = self.config.data.degrade.factor
      up = jnp.repeat(jnp.repeat(cond["low_res"], f, axis=1), f, axis=2)
      return jnp.clip(up + 0.01 * self.net.apply({"params": params}, up, train=False), -1, 1)
    return jnp.clip(self.net.apply({"params": params}, noise, train=False) + self._teacher(state, noise),
                    -1, 1)

  def eval_step(self, state, batch, rng):
    pred = self.net.apply({"params": state.params}, batch["image"], train=False)
    return {"mse": jnp.mean((pred - batch["image"]) ** 2, axis=(1, 2, 3))}


def toy_config(**overrides):
  """A seconds-long config on the embedded shapes dataset."""
  from jaxgen.configs import base_config
  from jaxgen.pretrained import part_defaults
  import ml_collections
  c = base_config()
  c.method = "toy_method:ToyDenoiser"
  c.data.source = "shapes"
  c.data.image_size = 8
  c.data.channels = 3
  c.data.num_classes = 0
  c.data.num_train_examples = 256
  c.model = ml_collections.ConfigDict({"nan_after": -1, "sleep_s": 0.0, "teacher_width": 0,
                                      "lazy_every": 0})
  c.pretrained.teacher = part_defaults()
  c.optim = ml_collections.ConfigDict({"name": "adam", "lr": 1e-2})
  c.train.batch_size = 8
  c.train.num_steps = 10
  c.train.log_every = 1
  c.train.ckpt_every = 4
  c.train.sample_every = 5
  c.train.num_samples = 4
  c.train.ema_decay = 0.9
  c.eval.batch_size = 8
  c.eval.num_examples = 20
  c.eval.num_samples = 6
  for k, v in overrides.items():
    node = c
    *path, last = k.split(".")
    for p in path:
      node = node[p]
    node[last] = v
  return c
