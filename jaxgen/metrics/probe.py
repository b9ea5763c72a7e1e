"""Evaluators of frozen features: a linear probe and weighted kNN, for any method with
`embed_images(state, batch) -> [B, D]` (SimCLR's encoder h, CLIP's image embedding).

Both embed the train split (config.eval.<name>.train_split, first num_train rows) and the eval split
(data.eval_split, eval.num_examples rows) with `Context.embed` (one sharded pass), then:

  linear_probe: multinomial logistic regression on the features standardised with the train
    split's mean / std, L2-regularised (loss = mean cross-entropy + l2 / 2 * ||W||^2, bias not
    decayed), solved to convergence with L-BFGS (optax.lbfgs, zoom line search; max_iters, tol on
    the gradient norm) in JAX on the host's device; reports `linear_probe_top1` (eval split) and
    `linear_probe_train_top1`.
  knn: weighted cosine kNN (Wu et al. 2018, as the usual SimCLR / MoCo evaluations): the k nearest
    train features by cosine similarity s vote for their labels with weight exp(s / temperature);
    k = 200, temperature = 0.1 by default; reports `knn_top1`.

Config (config.eval.linear_probe / config.eval.knn, ConfigDicts; keys optional):
  train_split ("train"), num_train (-1 = all), and for the probe l2 (1e-4), max_iters (1000),
  tol (1e-6); for kNN k (200), temperature (0.1).
"""
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxgen.errors import ConfigError
from jaxgen.evaluators import Context, Evaluator


def standardise(train: np.ndarray, test: np.ndarray, eps: float = 1e-6):
  mean, std = train.mean(0), train.std(0)
  return (train - mean) / (std + eps), (test - mean) / (std + eps)


def logistic_regression(x: jax.Array, y: jax.Array, num_classes: int, l2: float,
                        max_iters: int = 1000, tol: float = 1e-6):
  """L2-regularised multinomial logistic regression solved with L-BFGS.

  x float32 [N, D], y int32 [N]. Minimises mean CE + l2 / 2 * ||W||^2 over (W [D, K], b [K]) from
  zero. Returns ((W, b), final objective, iterations)."""
  x = jnp.asarray(x, jnp.float32)
  y = jnp.asarray(y, jnp.int32)

  def objective(p):
    logits = x @ p["w"] + p["b"]
    ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
    return ce + 0.5 * l2 * jnp.sum(jnp.square(p["w"]))

  params = {"w": jnp.zeros((x.shape[1], num_classes), jnp.float32),
            "b": jnp.zeros((num_classes,), jnp.float32)}
  return _solve(objective, params, max_iters, tol)


def _solve(objective, params, max_iters: int, tol: float):
  tx = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(objective)

  def step(carry):
    p, state, _, i = carry
    value, grad = value_and_grad(p, state=state)
    updates, state = tx.update(grad, state, p, value=value, grad=grad, value_fn=objective)
    return optax.apply_updates(p, updates), state, optax.tree.norm(grad), i + 1

  def cond(carry):
    _, _, gnorm, i = carry
    return (i < max_iters) & (gnorm > tol)

  @jax.jit
  def run(p):
    p, _, _, i = jax.lax.while_loop(cond, step, (p, tx.init(p), jnp.float32(jnp.inf), 0))
    return p, objective(p), i
  return run(params)


@functools.partial(jax.jit, static_argnames=("k", "num_classes", "chunk"))
def knn_predict(train: jax.Array, train_labels: jax.Array, test: jax.Array, *, k: int,
                temperature: float, num_classes: int, chunk: int = 1024) -> jax.Array:
  """Weighted cosine kNN labels int32 [M] of test [M, D] against train [N, D] (labels [N])."""
  norm = lambda v: v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
  train, test = norm(train.astype(jnp.float32)), norm(test.astype(jnp.float32))
  k = min(k, train.shape[0])
  m = test.shape[0]
  pad = (-m) % chunk
  test = jnp.pad(test, ((0, pad), (0, 0))).reshape(-1, chunk, test.shape[1])

  def one(t):
    sim, idx = jax.lax.top_k(t @ train.T, k)                     # [c, k]
    w = jnp.exp(sim / temperature)
    votes = jax.nn.one_hot(train_labels[idx], num_classes) * w[..., None]
    return jnp.argmax(jnp.sum(votes, 1), -1)
  return jax.lax.map(one, test).reshape(-1)[:m].astype(jnp.int32)


def _section(config, name: str) -> ml_collections.ConfigDict:
  return config.eval.get(name, None) or ml_collections.ConfigDict()


class _FeatureEvaluator(Evaluator):
  needs_samples = False
  name = ""

  def validate(self) -> None:
    c = _section(self.config, self.name)
    if self.config.data.get("num_classes", 0) < 2:
      raise ConfigError(f"config.eval.evaluators has {self.name!r}, which needs labels: "
                        f"config.data.num_classes={self.config.data.get('num_classes', 0)} must be >= 2.")
    n = c.get("num_train", -1)
    if not isinstance(n, int) or (n != -1 and n < 1):
      raise ConfigError(f"config.eval.{self.name}.num_train={n!r} must be -1 (the whole split) or >= 1.")
    from jaxgen import registry  # pylint: disable=g-import-not-at-top
    if not hasattr(registry.get_method_class(self.config.method), "embed_images"):
      raise ConfigError(f"config.eval.evaluators has {self.name!r}, but config.method="
                        f"{self.config.method!r} has no embed_images(state, batch); remove it.")

  def features(self, ctx: Context):
    c = _section(self.config, self.name)
    n = c.get("num_train", -1)
    split = c.get("train_split", "train")
    with ctx.config.unlocked():
      saved = ctx.config.eval.num_examples
      ctx.config.eval.num_examples = n
      try:
        train, tf = ctx.embed(ctx.method.embed_images, split)
      finally:
        ctx.config.eval.num_examples = saved
    test, sf = ctx.embed(ctx.method.embed_images, None)
    return train, tf["label"].astype(np.int32), test, sf["label"].astype(np.int32)


class LinearProbe(_FeatureEvaluator):
  name = "linear_probe"

  def validate(self) -> None:
    super().validate()
    c = _section(self.config, self.name)
    if not c.get("l2", 1e-4) >= 0:
      raise ConfigError(f"config.eval.linear_probe.l2={c.get('l2')!r} must be >= 0 (e.g. 1e-4).")
    if not c.get("max_iters", 1000) >= 1:
      raise ConfigError(f"config.eval.linear_probe.max_iters={c.get('max_iters')!r} must be >= 1.")

  def __call__(self, ctx: Context) -> dict:
    c = _section(self.config, self.name)
    xtr, ytr, xte, yte = self.features(ctx)
    xtr, xte = standardise(xtr, xte)
    k = int(self.config.data.num_classes)
    (p, _, _) = logistic_regression(xtr, ytr, k, float(c.get("l2", 1e-4)),
                                    int(c.get("max_iters", 1000)), float(c.get("tol", 1e-6)))
    acc = lambda x, y: float(np.mean(np.argmax(np.asarray(x @ p["w"] + p["b"]), -1) == y))
    return {"linear_probe_top1": acc(xte, yte), "linear_probe_train_top1": acc(xtr, ytr)}


class KNN(_FeatureEvaluator):
  name = "knn"

  def validate(self) -> None:
    super().validate()
    c = _section(self.config, self.name)
    if not (isinstance(c.get("k", 200), int) and c.get("k", 200) >= 1):
      raise ConfigError(f"config.eval.knn.k={c.get('k')!r} must be an integer >= 1 (e.g. 200).")
    if not c.get("temperature", 0.1) > 0:
      raise ConfigError(f"config.eval.knn.temperature={c.get('temperature')!r} must be > 0 (e.g. 0.1).")

  def __call__(self, ctx: Context) -> dict:
    c = _section(self.config, self.name)
    xtr, ytr, xte, yte = self.features(ctx)
    pred = knn_predict(xtr, ytr, xte, k=int(c.get("k", 200)), temperature=float(c.get("temperature", 0.1)),
                       num_classes=int(self.config.data.num_classes))
    return {"knn_top1": float(np.mean(np.asarray(pred) == yte))}
