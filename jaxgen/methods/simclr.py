"""SimCLR (Chen et al. 2020, arXiv:2002.05709; google-research/simclr): contrastive learning of visual
representations from two augmented views of each image.

train_step: two views of every image of the batch (jaxgen.augment.simclr_view, keys from the step
rng), one forward pass of the ResNet encoder + projection head over both views concatenated (so
BatchNorm's statistics are over all 2B views of the global batch, SimCLR's global BN), and NT-Xent over
the *global* batch: inside a shard_map over the mesh's batch axes each device L2-normalises its rows'
projections, all-gathers both views' projections and scores its own rows against all 2N columns
(positive: the other view of the same image; its own column masked out), as SimCLR's
objective.add_contrastive_loss(hidden_norm=True) with tpu_cross_replica_concat. `loss` is the mean
over the 2N anchors (the paper's L); SimCLR's code reports the sum of the two directions' means,
twice this.

Optimizer: config.optim (LARS in the configs: jaxgen.optim's lars with SimCLR's trust coefficient
1e-3, momentum 0.9 and biases / BN params excluded from decay and adaptation), its lr scaled by the
batch size as SimCLR's --learning_rate_scaling: config.simclr.lr_scaling = "linear" -> lr * B / 256,
"sqrt" -> lr * sqrt(B), "none" -> lr as given (the loop's logged `lr` is config.optim's schedule
before this scaling; `peak_lr()` gives the scaled peak). config.simclr: temperature, strength (colour jitter s),
blur (Gaussian blur, ImageNet), resize ("cubic" as SimCLR, or "linear").

Features for evaluation: `embed_images(state, batch)` = the encoder's h (before the head) of
batch["image"] without augmentation, BN with running statistics. BN statistics in
state.model_state["batch_stats"]. It draws no samples (can_sample = False).
"""
import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import PartitionSpec as P

from jaxgen import augment, optim, parallel
from jaxgen.errors import ConfigError
from jaxgen.methods.base import Batch, Method
from jaxgen.models import resnet
from jaxgen.state import TrainState

LARGE_NUM = 1e9
LR_SCALINGS = ("linear", "sqrt", "none")
RESIZE = ("cubic", "linear")


def nt_xent(z1: jax.Array, z2: jax.Array, temperature: float, axis_name=None) -> jax.Array:
  """NT-Xent of the local rows z1, z2 float [n, D] (two views of the same n images).

  axis_name None: the whole batch is local; else (inside shard_map) the rows of every device along
  axis_name are gathered as columns and this device's rows are the anchors. Returns this device's
  share of the mean over all 2N anchors (psum over axis_name gives the loss), float32 scalar.
  """
  z1 = z1.astype(jnp.float32)
  z2 = z2.astype(jnp.float32)
  z1 = z1 / jnp.maximum(jnp.linalg.norm(z1, axis=-1, keepdims=True), 1e-12)
  z2 = z2 / jnp.maximum(jnp.linalg.norm(z2, axis=-1, keepdims=True), 1e-12)
  n = z1.shape[0]
  if axis_name is None:
    z1_all, z2_all, offset = z1, z2, 0
  else:
    z1_all = jax.lax.all_gather(z1, axis_name, tiled=True)
    z2_all = jax.lax.all_gather(z2, axis_name, tiled=True)
    offset = jax.lax.axis_index(axis_name) * n
  total = z1_all.shape[0]
  labels = jnp.arange(n) + offset
  mask = jax.nn.one_hot(labels, total, dtype=jnp.float32) * LARGE_NUM

  def direction(a, b_all, a_all):
    pos = a @ b_all.T / temperature                    # [n, N]: column labels[i] is the positive
    neg = a @ a_all.T / temperature - mask             # same view, self masked
    logits = jnp.concatenate([pos, neg], axis=1)
    return jax.nn.logsumexp(logits, axis=1) - jnp.take_along_axis(pos, labels[:, None], 1)[:, 0]

  loss = direction(z1, z2_all, z1_all) + direction(z2, z1_all, z2_all)
  return jnp.sum(loss) / (2.0 * total)


def nt_xent_global(z1: jax.Array, z2: jax.Array, temperature: float, mesh) -> jax.Array:
  """NT-Xent over the global batch z1, z2 [B, D] (sharded over the batch axes), each device computing
  only its rows of the logits (module docstring). Equal to nt_xent(z1, z2, temperature)."""
  fn = jax.shard_map(functools.partial(_local_loss, temperature=temperature), mesh=mesh,
                     in_specs=(P(parallel.BATCH_AXES), P(parallel.BATCH_AXES)), out_specs=P())
  return fn(z1, z2)


def _local_loss(z1, z2, temperature):
  return jax.lax.psum(nt_xent(z1, z2, temperature, parallel.BATCH_AXES), parallel.BATCH_AXES)


def scaled_lr(lr: float, batch_size: int, scaling: str) -> float:
  """SimCLR's learning-rate scaling: linear lr * B / 256, sqrt lr * sqrt(B), none lr."""
  if scaling == "linear":
    return lr * batch_size / 256.0
  if scaling == "sqrt":
    return lr * math.sqrt(batch_size)
  return lr


class SimCLR(Method):
  """SimCLR pre-training (module docstring)."""
  can_sample = False

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    self.validate()
    m = config.model
    self.model = resnet.SimCLRModel(depth=m.depth, width=m.width, stem=m.stem, out_dim=m.out_dim,
                                    proj_layers=m.proj_layers, dtype=jnp.dtype(m.get("dtype", "float32")),
                                    stages=tuple(m.get("stages", ())))
    ocfg = config.optim.copy_and_resolve_references()
    ocfg.lr = self.peak_lr()
    self.tx = optim.make_optimizer(ocfg, config.train.num_steps)
    self._mesh = None

  def peak_lr(self) -> float:
    return scaled_lr(self.config.optim.lr, self.config.train.batch_size, self.config.simclr.lr_scaling)

  def validate(self) -> None:
    c, m = self.config.simclr, self.config.model
    if not c.temperature > 0:
      raise ConfigError(f"config.simclr.temperature={c.temperature!r} must be > 0 (SimCLR: 0.5 for "
                        f"CIFAR-10, 0.1 for ImageNet).")
    if not c.strength >= 0:
      raise ConfigError(f"config.simclr.strength={c.strength!r} must be >= 0 (colour jitter strength "
                        f"s: 0.5 for CIFAR-10, 1.0 for ImageNet; 0 = no colour distortion).")
    if c.lr_scaling not in LR_SCALINGS:
      raise ConfigError(f"config.simclr.lr_scaling={c.lr_scaling!r} is unknown; use one of "
                        f"{LR_SCALINGS} (linear: lr * B / 256, sqrt: lr * sqrt(B)).")
    if c.resize not in RESIZE:
      raise ConfigError(f"config.simclr.resize={c.resize!r} is unknown; use one of {RESIZE}.")
    if m.depth not in resnet.DEPTHS:
      raise ConfigError(f"config.model.depth={m.depth!r} is not a ResNet depth; use one of "
                        f"{sorted(resnet.DEPTHS)}.")
    if m.stem not in resnet.STEMS:
      raise ConfigError(f"config.model.stem={m.stem!r} is unknown; use one of {resnet.STEMS} "
                        f"('cifar' for 32x32 images).")
    stages = tuple(m.get("stages", ()))
    if any(not isinstance(n, int) or n < 1 for n in stages):
      raise ConfigError(f"config.model.stages={stages!r} must be () (the depth's) or positive block "
                        f"counts per stage, e.g. (1, 1, 1).")
    if m.proj_layers < 1 or m.out_dim < 1:
      raise ConfigError(f"config.model.proj_layers={m.proj_layers!r} and out_dim={m.out_dim!r} must be "
                        f">= 1 (SimCLR: 2 layers, 128 outputs).")
    if self.config.data.channels != 3:
      raise ConfigError(f"config.data.channels={self.config.data.channels} must be 3: SimCLR's colour "
                        f"augmentations need RGB images.")
    if self.config.train.get("ema_decay", 0.0):
      raise ConfigError(f"config.train.ema_decay={self.config.train.ema_decay} must be 0: SimCLR "
                        f"keeps no EMA (BN statistics would not follow it).")

  @property
  def mesh(self):
    if self._mesh is None:
      self._mesh = parallel.create_mesh(self.config.mesh)
    return self._mesh

  def init(self, rng: jax.Array, example_batch: Batch) -> TrainState:
    x = jnp.zeros(example_batch["image"].shape, jnp.float32)
    variables = self.model.init({"params": rng}, x, train=False)
    params = variables["params"]
    return TrainState.create(params=params, opt_state=self.tx.init(params), rng=rng,
                             model_state={"batch_stats": variables["batch_stats"]})

  def views(self, batch: Batch, rng: jax.Array) -> tuple[jax.Array, jax.Array]:
    c = self.config.simclr
    aug = functools.partial(augment.simclr_view, strength=c.strength, blur=c.blur, resize_method=c.resize)
    k1, k2 = jax.random.split(rng)
    return aug(k1, batch["image"]), aug(k2, batch["image"])

  def train_step(self, state: TrainState, batch: Batch, rng: jax.Array) -> tuple[TrainState, dict]:
    # The barrier keeps XLA from fusing the augmentations' elementwise chain into the encoder's
    # convolutions (and recomputing it there).
    v1, v2 = jax.lax.optimization_barrier(self.views(batch, rng))
    b = v1.shape[0]

    def loss_fn(params):
      (_, z), new_vars = self.model.apply(
          {"params": params, **state.model_state}, jnp.concatenate([v1, v2]), train=True,
          mutable=["batch_stats"])
      loss = nt_xent_global(z[:b], z[b:], self.config.simclr.temperature, self.mesh)
      return loss, new_vars

    (loss, new_vars), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(self.tx, grads).replace(model_state=dict(new_vars))
    return state, {"loss": loss}

  def embed_images(self, state: TrainState, batch: Batch) -> jax.Array:
    """h float32 [B, D] of batch["image"] (float [-1, 1] NHWC), no augmentation, BN in inference."""
    return self.model.apply({"params": self.sampling_params(state), **state.model_state},
                            batch["image"].astype(jnp.float32), train=False,
                            method=resnet.SimCLRModel.embed)
