"""jaxgen.optim: optimizers from configs, rules by parameter path, schedules and config errors."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxgen import optim
from jaxgen.errors import ConfigError


def _cfg(rules=None, **kw) -> ml_collections.ConfigDict:
  """An optimizer config; rules is a list of (name, rule dict), kept in that (insertion) order."""
  c = ml_collections.ConfigDict(dict(name="adam", lr=1e-2))
  c.update(kw)
  if rules is not None:
    c.rules = ml_collections.ConfigDict()
    for name, rule in rules:
      c.rules[name] = rule
  return c


def _params():
  """A StyleGAN-ish tree: a mapping MLP, a synthesis conv with a LayerNorm. Distinct shapes."""
  k = iter(jax.random.split(jax.random.PRNGKey(0), 8))
  return {
      "mapping": {"Dense_0": {"kernel": jax.random.normal(next(k), (4, 5)),
                              "bias": jax.random.normal(next(k), (5,))}},
      "synthesis": {"Conv_0": {"kernel": jax.random.normal(next(k), (3, 3, 2, 6)),
                               "bias": jax.random.normal(next(k), (6,))},
                    "LayerNorm_0": {"scale": 1 + 0.1 * jax.random.normal(next(k), (7,)),
                                    "bias": jax.random.normal(next(k), (7,))}},
  }


def _grads(params, seed=1):
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  return jax.tree.unflatten(tree, [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])


def _first_update(cfg, params, grads, num_steps=100):
  tx = optim.make_optimizer(cfg, num_steps)
  updates, _ = tx.update(grads, tx.init(params), params)
  return updates


def _run(tx, params, steps=3):
  state = tx.init(params)
  for i in range(steps):
    updates, state = tx.update(_grads(params, seed=i + 1), state, params)
    params = optax.apply_updates(params, updates)
  return params, state


def _close(a, b, rtol=1e-6, atol=0.0):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


def test_no_rules_is_the_plain_optax_optimizer():
  params, grads = _params(), _grads(_params())
  cfg = _cfg(b1=0.5, grad_clip=1.0)
  ref = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(optax.constant_schedule(1e-2), b1=0.5))
  _close(_first_update(cfg, params, grads), ref.update(grads, ref.init(params), params)[0])
  tx = optim.make_optimizer(cfg, 100)
  assert jax.tree.structure(tx.init(params)) == jax.tree.structure(ref.init(params))


def test_frozen_path_never_moves_and_has_no_state():
  params = _params()
  cfg = _cfg([("locked", dict(pattern=r"^mapping/", frozen=True))], name="adamw",
             weight_decay=0.1, grad_clip=10.0)
  new, state = _run(optim.make_optimizer(cfg, 100), params)
  _close(new["mapping"], params["mapping"], rtol=0)
  for a, b in zip(jax.tree.leaves(new["synthesis"]), jax.tree.leaves(params["synthesis"])):
    assert np.all(np.abs(np.asarray(a) - np.asarray(b)) > 0)
  state_shapes = {x.shape for x in jax.tree.leaves(state)}
  assert (4, 5) not in state_shapes and (5,) not in state_shapes   # the frozen params' shapes
  assert (3, 3, 2, 6) in state_shapes                                # adam's moments of the others
  assert set(jax.tree.leaves(optim.param_labels(params, cfg))) == {"frozen", "lr_mult=1.0,decay=on"}


def test_lr_mult_scales_the_first_adam_update_exactly():
  params, grads = _params(), _grads(_params())
  base = _first_update(_cfg(), params, grads)
  mult = _first_update(_cfg([("mapping", dict(pattern=r"^mapping/", lr_mult=0.01))]), params, grads)
  _close(mult["mapping"], jax.tree.map(lambda u: 0.01 * u, base["mapping"]))
  _close(mult["synthesis"], base["synthesis"], rtol=0)
  assert not np.allclose(mult["mapping"]["Dense_0"]["kernel"], base["mapping"]["Dense_0"]["kernel"])


def test_weight_decay_false_exempts_exactly_the_matching_params_in_adamw():
  params, grads = _params(), _grads(_params())
  lr, wd, eps = 1e-2, 0.1, 1e-8
  cfg = _cfg([("no_decay", dict(pattern=optim.NO_DECAY_ON_BIAS_AND_NORM, weight_decay=False))],
             name="adamw", lr=lr, weight_decay=wd, eps=eps)
  updates = _first_update(cfg, params, grads)
  decayed = {"mapping/Dense_0/kernel", "synthesis/Conv_0/kernel"}
  for (path, u), p, g in zip(jax.tree_util.tree_flatten_with_path(updates)[0],
                             jax.tree.leaves(params), jax.tree.leaves(grads)):
    name = optim.path_str(path)
    # Adam's first step: m_hat = g, v_hat = g^2 (bias corrections in float32, as optax does them),
    # so the direction is about g / (|g| + eps).
    m_hat = (1 - 0.9) * g / (1 - jnp.float32(0.9))
    v_hat = (1 - 0.999) * g ** 2 / (1 - jnp.float32(0.999))
    adam_dir = m_hat / (jnp.sqrt(v_hat) + eps)
    expected = -lr * (adam_dir + (wd * p if name in decayed else 0.0))
    np.testing.assert_allclose(u, expected, rtol=1e-6, err_msg=name)


def test_grad_clip_is_over_the_union_of_trainable_params_before_the_rules():
  params = {"a": jnp.zeros(2), "b": jnp.zeros(2), "c": jnp.zeros(1)}
  grads = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([0.0, 4.0]), "c": jnp.array([100.0])}
  cfg = _cfg([("c", dict(pattern="^c$", frozen=True)), ("b", dict(pattern="^b$", lr_mult=0.5))],
             name="sgd", lr=1.0, grad_clip=1.0)
  u = _first_update(cfg, params, grads)
  # Norm over a and b only (5, not ~100); a and b in different groups are clipped together.
  np.testing.assert_allclose(u["a"], [-0.6, 0.0], rtol=1e-6)
  np.testing.assert_allclose(u["b"], [0.0, -0.4], rtol=1e-6)
  np.testing.assert_array_equal(u["c"], [0.0])


def test_first_matching_rule_in_insertion_order_wins():
  params = {"mapping": {"Dense_0": {"kernel": jnp.ones(2)}, "Dense_1": {"kernel": jnp.ones(3)}}}
  # Names sort the other way round ("aaa" < "zzz"): precedence follows insertion, not names.
  cfg = _cfg([("zzz", dict(pattern="Dense_0", lr_mult=0.1)), ("aaa", dict(pattern="^mapping/", lr_mult=0.5))])
  labels = optim.param_labels(params, cfg)
  assert labels["mapping"]["Dense_0"]["kernel"] == "lr_mult=0.1,decay=on"
  assert labels["mapping"]["Dense_1"]["kernel"] == "lr_mult=0.5,decay=on"
  optim.check_rules(params, cfg)
  table = optim.describe_rules(params, cfg)
  assert table.splitlines()[1].split()[:4] == ["zzz", "Dense_0", "1", "2"]
  assert table.splitlines()[2].split()[:4] == ["aaa", "^mapping/", "1", "3"]
  # The broad rule first: the narrow one decides nothing, which check_rules (and init) report.
  shadowed = _cfg([("aaa", dict(pattern="^mapping/", lr_mult=0.5)), ("zzz", dict(pattern="Dense_0", lr_mult=0.1))])
  with pytest.raises(ConfigError, match=r"config.optim.rules.zzz.pattern='Dense_0' decides no .*'aaa'"):
    optim.check_rules(params, shadowed)


def test_unknown_name_names_the_full_config_path():
  with pytest.raises(ConfigError) as e:
    optim.make_optimizer(_cfg(name="adamx"), 100, where="config.optim.generator")
  assert str(e.value) == ("config.optim.generator.name='adamx' is unknown; use one of adam, adamw, "
                          "sgd, lars, lbfgs.")


@pytest.mark.parametrize("kw, match", [
    (dict(lr=-1e-3), r"config.optim.lr=-0.001 must be >= 0"),
    (dict(lr=float("nan")), r"config.optim.lr=nan must be a finite number"),
    (dict(warmup_steps=100), r"config.optim.warmup_steps=100 must be < the number of training steps \(100\)"),
    (dict(schedule="cosin"), r"config.optim.schedule='cosin' is unknown; use one of constant"),
    (dict(b1=1.0), r"config.optim.b1=1.0 must be < 1"),
    (dict(weight_decay=0.05), r"weight_decay=0.05 has no effect with config.optim.name='adam'; use name='adamw'"),
    (dict(warmup=10), r"config.optim.warmup is not an optimizer setting; did you mean config.optim.warmup_steps\?"),
    (dict(name="sgd", nesterov=True), r"config.optim.nesterov=True needs momentum"),
    (dict(final_lr_frac=2.0), r"config.optim.final_lr_frac=2.0 must be <= 1"),
])
def test_bad_values_raise_config_error(kw, match):
  with pytest.raises(ConfigError, match=match):
    optim.validate_optimizer(_cfg(**kw), 100, "config.optim")
  with pytest.raises(ConfigError, match=match):
    optim.make_optimizer(_cfg(**kw), 100)


def test_non_numbers_and_missing_lr_raise_config_error():
  where = "config.optim.generator"
  with pytest.raises(ConfigError, match=r"config.optim.generator.lr='1e-3' must be a finite number"):
    optim.make_optimizer(ml_collections.ConfigDict(dict(name="adam", lr="1e-3")), 100, where)
  with pytest.raises(ConfigError, match=r"config.optim.generator.lr is missing; set .* e.g."):
    optim.make_optimizer(ml_collections.ConfigDict(dict(name="adam")), 100, where)
  with pytest.raises(ConfigError, match=r"config.optim.generator.rules.m=.* must be a ConfigDict"):
    optim.validate_optimizer(ml_collections.ConfigDict(dict(lr=1.0, rules=dict(m="^x"))), 100, where)


def test_bad_rules_raise_config_error():
  where = "config.optim.generator"
  with pytest.raises(ConfigError, match=r"config.optim.generator.rules.m.pattern='\(mapping' is not a valid regular"):
    optim.make_optimizer(_cfg([("m", dict(pattern="(mapping"))]), 100, where)
  with pytest.raises(ConfigError, match=r"rules.m.lr_mul is not a rule setting; did you mean .*rules.m.lr_mult\?"):
    optim.validate_optimizer(_cfg([("m", dict(pattern="^mapping/", lr_mul=0.01))]), 100, where)
  with pytest.raises(ConfigError, match=r"rules.m.lr_mult=-1.0 must be >= 0"):
    optim.validate_optimizer(_cfg([("m", dict(pattern="^mapping/", lr_mult=-1.0))]), 100, where)
  with pytest.raises(ConfigError, match=r"rules.m.frozen=1 must be True or False"):
    optim.validate_optimizer(_cfg([("m", dict(pattern="^mapping/", frozen=1))]), 100, where)
  # A typo in a pattern matches nothing: check_rules says so, and so does the optimizer's init.
  typo = _cfg([("m", dict(pattern="^maping/", lr_mult=0.01))])
  msg = (r"config.optim.generator.rules.m.pattern='\^maping/' matches no parameter path \(paths look "
         r"like 'mapping/Dense_0/bias'")
  with pytest.raises(ConfigError, match=msg):
    optim.check_rules(_params(), typo, where)
  tx = optim.make_optimizer(typo, 100, where)   # building needs no params
  with pytest.raises(ConfigError, match=msg):
    tx.init(_params())


def test_lars_excludes_biases_and_norm_by_default():
  params = _params()
  cfg = _cfg(name="lars", lr=0.1, weight_decay=1e-2)
  sgd = optax.sgd(0.1, momentum=0.9)
  lars = optim.make_optimizer(cfg, 100)
  ls, ss = lars.init(params), sgd.init(params)
  for i in range(2):   # two steps, so the momentum matters
    g = _grads(params, seed=i + 1)
    lu, ls = jax.jit(lars.update)(g, ls, params)
    su, ss = sgd.update(g, ss, params)
  excluded = 0
  for (path, u), s in zip(jax.tree_util.tree_flatten_with_path(lu)[0], jax.tree.leaves(su)):
    if optim.path_str(path).endswith(("bias", "scale")):   # 3 biases and the LayerNorm scale
      np.testing.assert_allclose(u, s, rtol=1e-6, err_msg=optim.path_str(path))
      excluded += 1
  assert excluded == 4
  # Kernels get LARS's trust ratio and decay, so they differ from plain SGD.
  k = ("synthesis", "Conv_0", "kernel")
  assert not np.allclose(lu[k[0]][k[1]][k[2]], su[k[0]][k[1]][k[2]], rtol=1e-3)
  assert "exclude_bias_and_norm" in optim.describe_rules(params, cfg)
  # Turned off, the bias update is LARS's too (trust ratio applied), unlike plain SGD.
  off = optim.make_optimizer(_cfg(name="lars", lr=0.1, weight_decay=1e-2, exclude_bias_and_norm=False), 100)
  g = _grads(params)
  u = off.update(g, off.init(params), params)[0]["mapping"]["Dense_0"]["bias"]
  assert not np.allclose(u, sgd.update(g, sgd.init(params), params)[0]["mapping"]["Dense_0"]["bias"])


def test_lbfgs_minimises_a_quadratic():
  a = jnp.array([[3.0, 0.5, 0.0], [0.5, 2.0, 0.3], [0.0, 0.3, 1.0]])
  b = jnp.array([1.0, -2.0, 0.5])
  f = lambda x: 0.5 * x @ a @ x - b @ x
  tx = optim.make_optimizer(ml_collections.ConfigDict(dict(name="lbfgs", memory_size=5)), 0)
  value_and_grad = optax.value_and_grad_from_state(f)

  @jax.jit
  def step(x, state):
    value, grad = value_and_grad(x, state=state)
    updates, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=f)
    return optax.apply_updates(x, updates), state

  x = jnp.zeros(3)
  state = tx.init(x)
  for _ in range(6):
    x, state = step(x, state)
  np.testing.assert_allclose(x, jnp.linalg.solve(a, b), atol=1e-4)


def test_learning_rate_is_warmup_then_cosine():
  cfg = _cfg(lr=2.0, schedule="cosine", warmup_steps=10, final_lr_frac=0.1)
  n = 110
  expected = {0: 0.0, 5: 1.0, 10: 2.0, 60: 2.0 * (0.1 + 0.9 * 0.5), 110: 0.2,
              35: 2.0 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * 25 / 100)))}
  for step, lr in expected.items():
    got = optim.learning_rate(cfg, n, step)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, lr, rtol=1e-6, atol=1e-7)
  jitted = jax.jit(lambda s: optim.learning_rate(cfg, n, s))
  np.testing.assert_allclose(jitted(jnp.int32(35)), expected[35], rtol=1e-6)


def test_exponential_schedule():
  cfg = ml_collections.ConfigDict(dict(name="adam", lr=1e-3, schedule="exponential", decay_rate=0.99))
  sched = optim.make_schedule(cfg, 100)
  np.testing.assert_allclose([float(sched(s)) for s in (0, 1, 10)], [1e-3, 0.99e-3, 1e-3 * 0.99 ** 10],
                             rtol=1e-6)
  cfg.decay_rate = 1.5
  with pytest.raises(ConfigError, match="decay_rate"):
    optim.make_schedule(cfg, 100)


def test_step_schedule_multiplies_at_each_boundary_after_warmup():
  """SRGAN's 1e-4 -> 1e-5 at 1e5 steps (scaled down): lr x step_factor at each boundary step."""
  cfg = ml_collections.ConfigDict(dict(name="adam", lr=1e-4, schedule="step", warmup_steps=10,
                                       step_boundaries=(100, 150), step_factor=0.1))
  sched = optim.make_schedule(cfg, 200)
  got = [float(sched(s)) for s in (0, 5, 10, 99, 100, 149, 150, 199)]
  np.testing.assert_allclose(got, [0.0, 5e-5, 1e-4, 1e-4, 1e-5, 1e-5, 1e-6, 1e-6], rtol=1e-6)
  for bad in ((), (150, 100), (5,), (200,), (100.5,)):
    cfg.step_boundaries = bad
    with pytest.raises(ConfigError, match="step_boundaries"):
      optim.make_schedule(cfg, 200)
  cfg = ml_collections.ConfigDict(dict(name="adam", lr=1e-4, schedule="cosine", step_boundaries=(5,)))
  with pytest.raises(ConfigError, match="step_boundaries=\\(5,\\) has no effect"):
    optim.make_schedule(cfg, 200)
