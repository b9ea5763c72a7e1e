"""CycleGAN: unpaired image-to-image translation (Zhu et al. 2017, arXiv:1703.10593).

Two generators, G: A -> B and F: B -> A (ResNet generators), and two 70x70 PatchGAN discriminators,
D_A (real A images against F(b)) and D_B (real B against G(a)), trained with (paper Eq. 1-3, Sec. 4;
details from the authors' `cycle_gan_model.py`):
  L_G = MSE(D_B(G(a)), 1) + MSE(D_A(F(b)), 1)                        LSGAN (Mao et al. 2017)
        + lambda (|F(G(a)) - a|_1 + |G(F(b)) - b|_1)                  cycle consistency, lambda 10
        + lambda_idt lambda (|G(b) - b|_1 + |F(a) - a|_1)             identity, lambda_idt 0.5
  L_D = 0.5 (MSE(D_B(b), 1) + MSE(D_B(hist_B(G(a))), 0))             halved, as the reference
      + 0.5 (MSE(D_A(a), 1) + MSE(D_A(hist_A(F(b))), 0))
MSE is the mean over every patch logit; hist_X is a history buffer of 50 past fakes of domain X
(jaxgen.gan.history). One train_step is the reference's `optimize_parameters`: the four
translations, a step of both generators (D fixed), then a step of both discriminators on the real
images and on the buffer's answers for the fakes made before the generators' step.

The adversarial loss comes from jaxgen.gan.losses (config.cyclegan.loss, default "lsgan"), scaled to
the reference's criteria: its G term is nn.MSELoss, 2x LSGAN.g_loss (whose 1/2 is Mao et al.'s),
and its D term 0.5 (loss_real + loss_fake), which LSGAN.d_loss already is (non_saturating / hinge
d_loss sum the two terms, so they get the 0.5).

State: params = {"generator": {"ab": G, "ba": F}, "discriminator": {"a": D_A, "b": D_B}}, with one
optimizer per player pair as the reference (config.optim.generator over both generators,
config.optim.discriminator over both discriminators; Adam is per parameter, so this equals one
optimizer per network unless grad_clip, a global norm, is set). model_state = {"history": {"a":
buffer of fake A images, "b": buffer of fake B images}}. No EMA (the paper keeps none).

Data: two named streams with their own orders, config.data.streams.a and .b (batch keys "a/image",
"b/image"). Sampling translates source images: cond_keys ("a/image", "b/image") come from the eval
rows (no default); `sample` returns {"image": G(a), "grid_tiles": (a, G(a), F(G(a)), b, F(b),
G(F(b)))}, so grids show (input, translation, reconstruction) both ways.
"""
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxgen import optim
from jaxgen.gan import history
from jaxgen.gan.losses import LOSSES
from jaxgen.methods.base import Batch, ConfigError, Method
from jaxgen.models import cyclegan
from jaxgen.nn.dtypes import parse_dtype
from jaxgen.state import TrainState

STREAMS = ("a", "b")
PLAYERS = ("generator", "discriminator")
# (G term, D term) factors that turn LOSSES[name] into the reference's criteria (module docstring).
_REFERENCE_SCALES = {"lsgan": (2.0, 1.0), "non_saturating": (1.0, 0.5), "hinge": (1.0, 0.5)}
# jaxgen.sampling.GRID_TILES: the per-row tiles of sample grids (methods do not import the loop's
# modules; a test checks the two names agree).
GRID_TILES = "grid_tiles"


def l1(x: jax.Array, y: jax.Array) -> jax.Array:
  """Mean absolute error over all elements (torch's L1Loss), float32 scalar."""
  return jnp.mean(jnp.abs(x.astype(jnp.float32) - y.astype(jnp.float32)))


def generator_losses(real_a: jax.Array, real_b: jax.Array, rec_a: jax.Array, rec_b: jax.Array,
                     idt_a: Optional[jax.Array], idt_b: Optional[jax.Array], d_b_fake: jax.Array,
                     d_a_fake: jax.Array, *, loss: str = "lsgan", lambda_cycle: float = 10.0,
                     lambda_identity: float = 0.5) -> dict[str, jax.Array]:
  """The generators' objective and its parts (float32 scalars), from the images and D's logits.

  Args:
    real_a, real_b: the batch's images [B, H, W, C].
    rec_a, rec_b: F(G(a)), G(F(b)).
    idt_a, idt_b: F(a), G(b) (None when lambda_identity = 0).
    d_b_fake, d_a_fake: D_B(G(a)), D_A(F(b)) per-patch logits [B, h, w].
  Returns:
    g_loss (the total), g_adv_ab, g_adv_ba (the reference's adversarial terms), cycle_a, cycle_b,
    identity_a, identity_b (unweighted L1 means; identity NaN when off).
  """
  g_scale = _REFERENCE_SCALES[loss][0]
  adv_ab = g_scale * LOSSES[loss].g_loss(d_b_fake)
  adv_ba = g_scale * LOSSES[loss].g_loss(d_a_fake)
  cyc_a, cyc_b = l1(rec_a, real_a), l1(rec_b, real_b)
  total = adv_ab + adv_ba + lambda_cycle * (cyc_a + cyc_b)
  nan = jnp.float32(jnp.nan)
  idt_a_l = idt_b_l = nan
  if lambda_identity > 0:
    # The reference: loss_idt_A = L1(G_A(real_B), real_B) * lambda_B * lambda_identity.
    idt_a_l, idt_b_l = l1(idt_a, real_a), l1(idt_b, real_b)
    total = total + lambda_identity * lambda_cycle * (idt_a_l + idt_b_l)
  return {"g_loss": total, "g_adv_ab": adv_ab, "g_adv_ba": adv_ba, "cycle_a": cyc_a,
          "cycle_b": cyc_b, "identity_a": idt_a_l, "identity_b": idt_b_l}


def discriminator_loss(real: jax.Array, fake: jax.Array, loss: str = "lsgan") -> jax.Array:
  """One discriminator's objective from its logits on real and (history) fake images, the
  reference's 0.5 (loss_real + loss_fake); float32 scalar."""
  return _REFERENCE_SCALES[loss][1] * LOSSES[loss].d_loss(real, fake)


class CycleGAN(Method):
  """See the module docstring. Config: model.{gen_features, disc_features, num_blocks, disc_layers,
  dtype}, cyclegan.{loss, lambda_cycle, lambda_identity, pool_size}, optim.{generator,
  discriminator}, data.streams.{a, b}."""
  cond_keys = ("a/image", "b/image")

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    self.validate()
    c = config
    self.size, self.channels = self._stream_shape()
    dtype = parse_dtype(c.model.dtype)
    blocks = c.model.num_blocks if c.model.num_blocks >= 0 else cyclegan.default_num_blocks(self.size)
    self.generator = cyclegan.ResnetGenerator(self.channels, c.model.gen_features, blocks, dtype)
    self.discriminator = cyclegan.PatchDiscriminator(c.model.disc_features, c.model.disc_layers, dtype)
    self.optimizers = {p: optim.make_optimizer(c.optim[p], c.train.num_steps, where=f"config.optim.{p}")
                       for p in PLAYERS}

  def _stream_shape(self) -> tuple[int, int]:
    """(image side, channels) shared by both streams."""
    from jaxgen import data  # pylint: disable=g-import-not-at-top  (no TF at import)
    cfgs = data.stream_configs(self.config.data)
    shapes = {s: (cfgs[s].get("random_crop", 0) or cfgs[s].image_size, cfgs[s].channels)
              for s in STREAMS}
    if shapes["a"] != shapes["b"]:
      raise ConfigError(
          f"CycleGAN needs both domains at one size and channel count (the identity loss feeds B "
          f"images to G: A -> B), but data.streams.a gives (side, channels) {shapes['a']} and "
          f"data.streams.b {shapes['b']}; set data.image_size / random_crop / channels once in "
          f"config.data, not per stream.")
    return shapes["a"]

  def validate(self) -> None:
    c = self.config
    streams = c.data.get("streams") or {}
    if set(streams.keys()) != set(STREAMS):
      raise ConfigError(
          f"CycleGAN needs exactly the two data streams config.data.streams.a and .b (its two "
          f"domains, batch keys 'a/image', 'b/image'); got {sorted(streams.keys())}. E.g. "
          f"config.data.streams.a = dict(classes=(3,)); config.data.streams.b = dict(classes=(5,)).")
    size, channels = self._stream_shape()
    if size < 8 or size % 4:
      raise ConfigError(
          f"CycleGAN's ResNet generator needs an image side that is a multiple of 4 and >= 8 (two "
          f"stride-2 stages down and up); got {size} (data.random_crop or data.image_size). Use e.g. "
          f"32, 128 or 256.")
    for name in ("gen_features", "disc_features", "disc_layers"):
      if c.model[name] < 1:
        raise ConfigError(f"config.model.{name}={c.model[name]} must be >= 1 (the paper: "
                          f"gen_features=64, disc_features=64, disc_layers=3).")
    if c.model.num_blocks < -1:
      raise ConfigError(f"config.model.num_blocks={c.model.num_blocks} must be >= 0, or -1 for the "
                        f"paper's choice (6 at <= 128 px, 9 above).")
    if cyclegan.output_size(size, c.model.disc_layers) < 1:
      raise ConfigError(
          f"config.model.disc_layers={c.model.disc_layers} is too deep for {size}x{size} images (the "
          f"PatchGAN's logit map would be empty); lower it (3 = the paper's 70x70 PatchGAN).")
    parse_dtype(c.model.dtype)
    cg = c.cyclegan
    if cg.loss not in _REFERENCE_SCALES:
      raise ConfigError(f"config.cyclegan.loss={cg.loss!r} is unknown; use one of "
                        f"{sorted(_REFERENCE_SCALES)} ('lsgan' is the paper's).")
    for name in ("lambda_cycle", "lambda_identity"):
      if not cg[name] >= 0:
        raise ConfigError(f"config.cyclegan.{name}={cg[name]} must be >= 0 (the paper: lambda_cycle="
                          f"10, lambda_identity=0.5).")
    if not isinstance(cg.pool_size, int) or cg.pool_size < 0:
      raise ConfigError(f"config.cyclegan.pool_size={cg.pool_size!r} must be an int >= 0 (the "
                        f"paper's history buffer holds 50 images; 0 = none).")
    if c.train.ema_decay:
      raise ConfigError(f"config.train.ema_decay={c.train.ema_decay}: CycleGAN keeps no EMA of its "
                        f"generators; set config.train.ema_decay=0.")
    for player in PLAYERS:
      if player not in c.get("optim", {}):
        raise ConfigError(f"config.optim.{player} is missing: CycleGAN takes one optimizer config "
                          f"per player pair, e.g. config.optim.{player} = ConfigDict(dict(name="
                          f"'adam', lr=2e-4, b1=0.5)).")
      optim.validate_optimizer(c.optim[player], c.train.num_steps, where=f"config.optim.{player}")

  def init(self, rng: jax.Array, example_batch: Batch) -> TrainState:
    k = jax.random.split(rng, 5)
    x = jnp.zeros((1, *example_batch["a/image"].shape[1:]), jnp.float32)
    init = cyclegan.reference_init   # N(0, 0.02) kernels, zero biases
    params = {"generator": {"ab": init(self.generator, k[0], x), "ba": init(self.generator, k[1], x)},
              "discriminator": {"a": init(self.discriminator, k[2], x),
                                "b": init(self.discriminator, k[3], x)}}
    opt_state = {p: self.optimizers[p].init(params[p]) for p in PLAYERS}
    pool = self.config.cyclegan.pool_size
    buffers = {s: history.init(pool, tuple(example_batch[f"{s}/image"].shape[1:])) for s in STREAMS}
    return TrainState.create(params=params, opt_state=opt_state, rng=k[4],
                             model_state={"history": buffers})

  def translate(self, params: Any, images: jax.Array) -> jax.Array:
    """One generator's images [B, H, W, C] -> [B, H, W, C] float32 in [-1, 1]."""
    return self.generator.apply({"params": params}, images)

  def discriminate(self, params: Any, images: jax.Array) -> jax.Array:
    """One discriminator's per-patch logits [B, h, w]."""
    return self.discriminator.apply({"params": params}, images)

  def _translations(self, gp: Any, a: jax.Array, b: jax.Array, identity: bool) -> dict:
    """G(a), F(b), F(G(a)), G(F(b)) and, with identity, G(b), F(a). Inputs that go through the same
    generator are batched together (instance norm is per example, so this changes no value)."""
    n = a.shape[0]
    if identity:
      out_ab = self.translate(gp["ab"], jnp.concatenate([a, b]))
      out_ba = self.translate(gp["ba"], jnp.concatenate([b, a]))
      fake_b, idt_b, fake_a, idt_a = out_ab[:n], out_ab[n:], out_ba[:n], out_ba[n:]
    else:
      fake_b, fake_a = self.translate(gp["ab"], a), self.translate(gp["ba"], b)
      idt_a = idt_b = None
    return {"fake_b": fake_b, "fake_a": fake_a, "rec_a": self.translate(gp["ba"], fake_b),
            "rec_b": self.translate(gp["ab"], fake_a), "idt_a": idt_a, "idt_b": idt_b}

  def train_step(self, state: TrainState, batch: Batch, rng: jax.Array) -> tuple[TrainState, dict]:
    """Both generators' step, then both discriminators' step (see the module docstring).

    Metrics (float32 scalars): loss = g_loss + d_loss, g_loss, d_loss, d_a / d_b (each
    discriminator's loss), g_adv_ab / g_adv_ba, cycle_a / cycle_b and identity_a / identity_b
    (unweighted L1 means), d_a_real / d_a_fake / d_b_real / d_b_fake (mean logits), and
    history_from_past (the fraction of D's fakes the buffers took from the past)."""
    cg = self.config.cyclegan
    a, b = batch["a/image"], batch["b/image"]
    params, buffers = state.params, state.model_state["history"]
    dp = params["discriminator"]
    identity = cg.lambda_identity > 0

    def g_loss_fn(gp):
      t = self._translations(gp, a, b, identity)
      losses = generator_losses(a, b, t["rec_a"], t["rec_b"], t["idt_a"], t["idt_b"],
                                self.discriminate(dp["b"], t["fake_b"]),
                                self.discriminate(dp["a"], t["fake_a"]), loss=cg.loss,
                                lambda_cycle=cg.lambda_cycle, lambda_identity=cg.lambda_identity)
      return losses["g_loss"], (losses, t["fake_a"], t["fake_b"])

    (_, (g_metrics, fake_a, fake_b)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
        params["generator"])
    g_updates, g_opt = self.optimizers["generator"].update(
        g_grads, state.opt_state["generator"], params["generator"])
    g_params = optax.apply_updates(params["generator"], g_updates)

    # The discriminators see the fakes made before the generators' step (as the reference, which
    # reuses forward()'s fake_A / fake_B), through the history buffers.
    rng_a, rng_b = jax.random.split(rng)
    buf_a, hist_a = history.query(buffers["a"], jax.lax.stop_gradient(fake_a), rng_a)
    buf_b, hist_b = history.query(buffers["b"], jax.lax.stop_gradient(fake_b), rng_b)
    n = a.shape[0]

    def d_loss_fn(dp):
      # Real and fake in one batch per discriminator: instance norm is per example.
      out_a = self.discriminate(dp["a"], jnp.concatenate([a, hist_a]))
      out_b = self.discriminate(dp["b"], jnp.concatenate([b, hist_b]))
      d_a = discriminator_loss(out_a[:n], out_a[n:], cg.loss)
      d_b = discriminator_loss(out_b[:n], out_b[n:], cg.loss)
      return d_a + d_b, {"d_a": d_a, "d_b": d_b, "d_a_real": jnp.mean(out_a[:n]),
                         "d_a_fake": jnp.mean(out_a[n:]), "d_b_real": jnp.mean(out_b[:n]),
                         "d_b_fake": jnp.mean(out_b[n:])}

    (d_loss, d_metrics), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(dp)
    d_updates, d_opt = self.optimizers["discriminator"].update(
        d_grads, state.opt_state["discriminator"], dp)
    d_params = optax.apply_updates(dp, d_updates)

    from_past = jnp.mean(jnp.concatenate([
        jnp.any(hist_a != fake_a.astype(hist_a.dtype), axis=(1, 2, 3)),
        jnp.any(hist_b != fake_b.astype(hist_b.dtype), axis=(1, 2, 3))]).astype(jnp.float32))
    state = state.replace(
        step=state.step + 1,
        params={"generator": g_params, "discriminator": d_params},
        opt_state={"generator": g_opt, "discriminator": d_opt},
        model_state={**state.model_state, "history": {"a": buf_a, "b": buf_b}})
    metrics = {**g_metrics, **d_metrics, "d_loss": d_loss, "loss": g_metrics["g_loss"] + d_loss,
               "history_from_past": from_past}
    return state, metrics

  def sampling_params(self, state: TrainState) -> Any:
    return state.params["generator"]

  def sample(self, state: TrainState, rng: jax.Array, num: int, cond: Optional[Batch] = None
             ) -> dict[str, jax.Array]:
    """Translations of the given images both ways (deterministic; rng is unused).

    Args:
      cond: {"a/image": [num, H, W, C], "b/image": [num, H, W, C]} in [-1, 1] (eval rows).
    Returns:
      {"image": G(a) [num, H, W, C], "grid_tiles": [num, 6, H, W, C] = (a, G(a), F(G(a)), b, F(b),
      G(F(b)))}, float32 in [-1, 1].
    """
    del rng
    if cond is None or any(k not in cond for k in self.cond_keys):
      raise ValueError(f"CycleGAN translates given images: sample() needs cond with {self.cond_keys} "
                       f"(the eval rows of both streams), got {None if cond is None else sorted(cond)}.")
    a, b = cond["a/image"], cond["b/image"]
    t = self._translations(self.sampling_params(state), a, b, identity=False)
    tiles = jnp.stack([a, t["fake_b"], t["rec_a"], b, t["fake_a"], t["rec_b"]], axis=1)
    return {"image": t["fake_b"], GRID_TILES: tiles.astype(jnp.float32)}
