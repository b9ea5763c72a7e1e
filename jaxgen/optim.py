"""Optimizers and learning-rate schedules from a config (optax), with rules by parameter path.

Every family builds its optimizers here: `make_optimizer(config.optim, num_steps)`, or one per
network (`config.optim.generator`, `config.optim.discriminator`, ...) with `where` naming it.

Config keys (all optional except `lr`, which lbfgs does not need):

  name            adam | adamw | sgd | lars | lbfgs (default adam).
  lr              peak learning rate, >= 0. lbfgs: None (default) lets the line search pick the step.
  schedule        constant | cosine | linear | exponential (default constant): the shape after the
                  warm-up.
  warmup_steps    linear warm-up from 0 to lr over this many steps (default 0); < num_steps.
  final_lr_frac   cosine / linear: the lr at the last step as a fraction of lr, in [0, 1] (default 0).
  hold_frac       cosine / linear / exponential: the fraction of the steps after the warm-up held at
                  lr before the decay starts, in [0, 1) (default 0). CycleGAN: schedule='linear',
                  hold_frac=0.5 (constant for the first half, then linearly to 0).
  decay_rate      exponential: the lr's factor per step, in [0, 1] (default 1; PixelCNN++ 0.999995).
  step_boundaries step: the training steps (increasing, after the warm-up, < num_steps) at which the
                  lr is multiplied by step_factor (default 0.1): SRGAN's 1e-4 -> 1e-5 at step 1e5 is
                  schedule='step', step_boundaries=(100000,).
  b1, b2, eps     adam / adamw moment decays and denominator epsilon (0.9, 0.999, 1e-8).
  weight_decay    >= 0 (default 0). adamw: decoupled, update = -lr * (adam_dir + wd * p).
                  sgd: L2 added to the gradient. lars: LARS's decay. adam, lbfgs: must be 0.
  momentum        sgd: None or 0 = plain SGD (default None). lars: default 0.9.
  nesterov        sgd / lars: Nesterov momentum; adam / adamw: NAdam (default False).
  trust_coefficient  lars: the trust-ratio coefficient (default 1e-3, SimCLR's).
  memory_size     lbfgs: how many past (s, y) pairs approximate the inverse Hessian (default 10).
  grad_clip       clip by global norm, computed over all non-frozen params, before anything else;
                  0 or None = off (default 0).
  exclude_bias_and_norm  append the rule `NO_DECAY_ON_BIAS_AND_NORM` with weight_decay=False after
                  `rules` (default True for lars, as SimCLR, False otherwise; CLIP sets it True).
  rules           named rules by parameter path (below).

Rules. `cfg.rules` is a ConfigDict of named rules, so that the command line can override them
(`--config.optim.rules.mapping.lr_mult=0.01`). Each rule is a ConfigDict with

  pattern         a regex, matched with re.search against the "/"-joined key path of a param
                  relative to the tree given to the optimizer, e.g. "mapping/Dense_0/kernel".
  lr_mult         >= 0 (default 1.0): that param's updates are scaled by it (= its lr is).
  weight_decay    bool (default True): whether the optimizer's weight decay applies. For lars,
                  False also exempts the param from trust-ratio adaptation (SimCLR's exclusion).
  frozen          bool (default False): the param never moves and has no optimizer state.

Spell out (as floats / bools) the keys a run may override: config_flags cannot add new keys.

The first rule in insertion order whose pattern matches a path decides for that param; params
matching no rule get the defaults. ml_collections' `keys()` sorts names, so the order is read from
the ConfigDict's own fields: it survives copies, pickling and JSON but not `to_dict()` or
`FrozenConfigDict`. Example (StyleGAN's mapping network, ControlNet's locked copy, CLIP's decay):

  c.optim.rules = ml_collections.ConfigDict()
  c.optim.rules.mapping = dict(pattern=r"^mapping/", lr_mult=0.01)
  c.optim.rules.locked = dict(pattern=r"^locked_unet/", frozen=True)
  c.optim.rules.no_decay = dict(pattern=optim.NO_DECAY_ON_BIAS_AND_NORM, weight_decay=False)

The optimizer's `init` checks the rules against the params (`check_rules`): a rule that decides
no param is a ConfigError, since a typo in a pattern would otherwise silently do nothing. Trainers
can log `describe_rules(params, cfg)` at the start and `learning_rate(cfg, num_steps, step)` per step.
"""
import dataclasses
import difflib
import math
import numbers
import re
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxgen.errors import ConfigError

PyTree = Any

NAMES = ("adam", "adamw", "sgd", "lars", "lbfgs")
SCHEDULES = ("constant", "cosine", "linear", "exponential", "step")

# Biases and normalisation gains: Flax's Dense / Conv "bias", LayerNorm / GroupNorm / BatchNorm /
# RMSNorm "scale" and "bias", CLIP's "logit_scale", and anything inside a Flax norm module. Used
# as a pattern with weight_decay=False (CLIP, SimCLR's LARS, ViTs).
NO_DECAY_ON_BIAS_AND_NORM = (r"(bias|scale|embedding_norm)$"
                             r"|(^|/)(LayerNorm|GroupNorm|BatchNorm|RMSNorm)[^/]*/")

_KEYS = ("name", "lr", "schedule", "warmup_steps", "final_lr_frac", "hold_frac", "decay_rate",
         "step_boundaries", "step_factor", "b1",
         "b2", "eps", "weight_decay", "momentum", "nesterov", "trust_coefficient", "memory_size", "grad_clip",
         "exclude_bias_and_norm", "rules")
_RULE_KEYS = ("pattern", "lr_mult", "weight_decay", "frozen")
_FROZEN = "frozen"
_DEFAULT = "(default)"


@dataclasses.dataclass(frozen=True)
class Rule:
  """One parsed rule. `implicit` marks the one `exclude_bias_and_norm` adds (never checked)."""
  name: str
  pattern: str
  regex: re.Pattern
  lr_mult: float = 1.0
  weight_decay: bool = True
  frozen: bool = False
  implicit: bool = False

  @property
  def label(self) -> str:
    return _label(self.lr_mult, self.weight_decay, self.frozen)


def _label(lr_mult: float, weight_decay: bool, frozen: bool) -> str:
  """The multi_transform label of one (lr_mult, weight_decay, frozen) group; all frozen are one."""
  if frozen:
    return _FROZEN
  return f"lr_mult={float(lr_mult)!r},decay={'on' if weight_decay else 'off'}"


_DEFAULT_LABEL = _label(1.0, True, False)


# ----------------------------------------------------------------------------------------------
# Validation.

def _is_number(v: Any) -> bool:
  return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _number(cfg, key: str, where: str, default: Any, *, lo: Optional[float] = None,
            lo_open: bool = False, hi: Optional[float] = None, hi_open: bool = False,
            allow_none: bool = False, fix: str = "") -> Any:
  """cfg[key] (or default) checked to be a finite real number in the given range."""
  v = cfg.get(key, default)
  path = f"{where}.{key}"
  if v is None and allow_none:
    return None
  if not _is_number(v) or not math.isfinite(v):
    raise ConfigError(f"{path}={v!r} must be a finite number{'' if not allow_none else ' or None'}; "
                      f"{fix or 'set a number'}.")
  if lo is not None and (v < lo or (lo_open and v == lo)):
    raise ConfigError(f"{path}={v!r} must be {'>' if lo_open else '>='} {lo:g}; {fix}.")
  if hi is not None and (v > hi or (hi_open and v == hi)):
    raise ConfigError(f"{path}={v!r} must be {'<' if hi_open else '<='} {hi:g}; {fix}.")
  return v


def _bool(value: Any, path: str, fix: str) -> bool:
  if not isinstance(value, (bool, np.bool_)):
    raise ConfigError(f"{path}={value!r} must be True or False; {fix}.")
  return bool(value)


def _unknown_key(key: str, known: Sequence[str], where: str, what: str) -> ConfigError:
  close = difflib.get_close_matches(key, known, n=1)
  hint = f"did you mean {where}.{close[0]}? " if close else ""
  return ConfigError(f"{where}.{key} is not {what}; {hint}Known keys: {', '.join(known)}.")


def _is_mapping(x: Any) -> bool:
  return isinstance(x, (dict, ml_collections.ConfigDict))


def _ordered_items(d) -> list[tuple[str, Any]]:
  """A ConfigDict's items in insertion order (its keys() are sorted by name); a dict's as is."""
  fields = getattr(d, "_fields", None)
  keys = list(fields) if isinstance(fields, dict) else list(d.keys())
  return [(k, d[k]) for k in keys]


def _validate_schedule(cfg, num_steps: int, where: str) -> None:
  if isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral) or num_steps < 0:
    raise ConfigError(f"num_steps={num_steps!r} (for {where}; usually config.train.num_steps) must "
                      f"be an integer >= 0.")
  name = cfg.get("name", "adam")
  if "lr" not in cfg and name != "lbfgs":
    raise ConfigError(f"{where}.lr is missing; set the peak learning rate, e.g. {where}.lr=1e-3.")
  lr = _number(cfg, "lr", where, None, lo=0.0, allow_none=name == "lbfgs",
               fix=f"set the peak learning rate, e.g. {where}.lr=1e-3")
  kind = cfg.get("schedule", "constant")
  if kind not in SCHEDULES:
    raise ConfigError(f"{where}.schedule={kind!r} is unknown; use one of {', '.join(SCHEDULES)}.")
  warmup = cfg.get("warmup_steps", 0)
  if isinstance(warmup, bool) or not isinstance(warmup, numbers.Integral) or warmup < 0:
    raise ConfigError(f"{where}.warmup_steps={warmup!r} must be an integer >= 0 (0 = no warm-up).")
  if 0 < num_steps <= warmup:
    raise ConfigError(f"{where}.warmup_steps={warmup} must be < the number of training steps "
                      f"({num_steps}), or the lr never reaches {where}.lr; lower it (e.g. "
                      f"{where}.warmup_steps={num_steps // 10}) or set it to 0.")
  _number(cfg, "final_lr_frac", where, 0.0, lo=0.0, hi=1.0,
          fix="it is the last step's lr as a fraction of lr, e.g. 0.0 or 0.01")
  _number(cfg, "decay_rate", where, 1.0, lo=0.0, hi=1.0,
          fix="exponential: the lr's factor per step, e.g. 0.999995 (PixelCNN++)")
  hold = _number(cfg, "hold_frac", where, 0.0, lo=0.0, hi=1.0, hi_open=True,
                 fix="it is the fraction of the steps kept at lr before the decay, e.g. 0.5 (CycleGAN)")
  if hold and kind in ("constant", "step"):
    raise ConfigError(f"{where}.hold_frac={hold!r} has no effect with {where}.schedule='constant'; "
                      f"use schedule='linear' (CycleGAN), 'cosine' or 'exponential', or hold_frac=0.")
  if kind == "step":
    bounds = cfg.get("step_boundaries", ())
    if (not isinstance(bounds, (tuple, list)) or not bounds
        or any(isinstance(b, bool) or not isinstance(b, numbers.Integral) for b in bounds)
        or list(bounds) != sorted(set(bounds)) or bounds[0] <= warmup or bounds[-1] >= max(num_steps, 1)):
      raise ConfigError(f"{where}.step_boundaries={bounds!r} must be increasing integer steps after "
                        f"the warm-up ({warmup}) and before num_steps ({num_steps}), e.g. "
                        f"({max(num_steps // 2, warmup + 1)},) with schedule='step'.")
    _number(cfg, "step_factor", where, 0.1, lo=0.0, hi=1.0,
            fix="the lr's factor at each boundary, e.g. 0.1 (SRGAN: 1e-4 -> 1e-5)")
  elif cfg.get("step_boundaries", ()):
    raise ConfigError(f"{where}.step_boundaries={cfg.step_boundaries!r} has no effect with "
                      f"{where}.schedule={kind!r}; use schedule='step' or step_boundaries=().")
  if lr is None and (warmup or kind != "constant"):
    raise ConfigError(f"{where}.lr is None (the L-BFGS line search picks the step), so "
                      f"{where}.schedule={kind!r} / warmup_steps={warmup} have no effect; set "
                      f"{where}.lr to a number or use schedule='constant', warmup_steps=0.")


def _parse_rules(cfg, where: str) -> list[Rule]:
  """cfg.rules (validated) in insertion order, plus the implicit bias/norm rule if enabled."""
  rules_cfg = cfg.get("rules", None)
  rules = []
  if rules_cfg is not None:
    if not _is_mapping(rules_cfg):
      raise ConfigError(f"{where}.rules={rules_cfg!r} must be a ConfigDict of named rules, e.g. "
                        f"{where}.rules.mapping = ConfigDict(dict(pattern='^mapping/', "
                        f"lr_mult=0.01)).")
    for name, r in _ordered_items(rules_cfg):
      path = f"{where}.rules.{name}"
      if not _is_mapping(r):
        raise ConfigError(f"{path}={r!r} must be a ConfigDict with a pattern, e.g. "
                          f"{path} = ConfigDict(dict(pattern='^mapping/', lr_mult=0.01)).")
      for key in r.keys():
        if key not in _RULE_KEYS:
          raise _unknown_key(key, _RULE_KEYS, path, "a rule setting")
      pattern = r.get("pattern", None)
      if not isinstance(pattern, str) or not pattern:
        raise ConfigError(f"{path}.pattern={pattern!r} must be a non-empty regex string matched "
                          f"against param paths such as 'mapping/Dense_0/kernel'; set {path}.pattern.")
      try:
        regex = re.compile(pattern)
      except re.error as e:
        raise ConfigError(f"{path}.pattern={pattern!r} is not a valid regular expression ({e}); fix "
                          f"the regex (escape literal brackets and dots with a backslash).") from None
      lr_mult = _number(r, "lr_mult", path, 1.0, lo=0.0,
                        fix="it scales this rule's learning rate, e.g. 0.01 (use frozen=True for 0)")
      decay = _bool(r.get("weight_decay", True), f"{path}.weight_decay",
                    "it says whether the optimizer's weight decay applies to the matched params")
      frozen = _bool(r.get("frozen", False), f"{path}.frozen",
                     "True keeps the matched params fixed")
      rules.append(Rule(name, pattern, regex, float(lr_mult), decay, frozen))
  name = cfg.get("name", "adam")
  exclude = cfg.get("exclude_bias_and_norm", None)
  if exclude is None:
    exclude = name == "lars"
  exclude = _bool(exclude, f"{where}.exclude_bias_and_norm",
                  "True appends a no-weight-decay rule for biases and norm gains (None = lars only)")
  if exclude:
    rules.append(Rule("exclude_bias_and_norm", NO_DECAY_ON_BIAS_AND_NORM,
                      re.compile(NO_DECAY_ON_BIAS_AND_NORM), weight_decay=False, implicit=True))
  return rules


def validate_optimizer(cfg: ml_collections.ConfigDict, num_steps: int,
                       where: str = "config.optim") -> None:
  """Raises ConfigError for any bad key or value in cfg (see the module docstring); builds nothing.

  Args:
    cfg: the optimizer config.
    num_steps: the run's number of optimizer steps (>= 0; 0 = unknown / not training).
    where: the config path of cfg, used in messages, e.g. "config.optim.generator".
  """
  if not _is_mapping(cfg):
    raise ConfigError(f"{where} must be a ConfigDict of optimizer settings, e.g. "
                      f"{where} = ConfigDict(dict(name='adam', lr=1e-3)); got {cfg!r}.")
  for key in cfg.keys():
    if key not in _KEYS:
      raise _unknown_key(key, _KEYS, where, "an optimizer setting")
  name = cfg.get("name", "adam")
  if name not in NAMES:
    raise ConfigError(f"{where}.name={name!r} is unknown; use one of {', '.join(NAMES)}.")
  _validate_schedule(cfg, num_steps, where)
  _number(cfg, "b1", where, 0.9, lo=0.0, hi=1.0, hi_open=True, fix="Adam uses 0.9, GANs 0.0 or 0.5")
  _number(cfg, "b2", where, 0.999, lo=0.0, hi=1.0, hi_open=True, fix="Adam uses 0.999, GANs 0.99")
  _number(cfg, "eps", where, 1e-8, lo=0.0, lo_open=True, fix="e.g. 1e-8 (0 divides by zero)")
  wd = _number(cfg, "weight_decay", where, 0.0, lo=0.0, fix="e.g. 0.05 (0 = none)")
  if wd and name in ("adam", "lbfgs"):
    fix = "use name='adamw' for decoupled decay" if name == "adam" else "L-BFGS has no decay"
    raise ConfigError(f"{where}.weight_decay={wd!r} has no effect with {where}.name={name!r}; "
                      f"{fix}, or set {where}.weight_decay=0.")
  momentum = _number(cfg, "momentum", where, None, lo=0.0, hi=1.0, hi_open=True, allow_none=True,
                     fix="e.g. 0.9 (sgd: None or 0 = none)")
  nesterov = _bool(cfg.get("nesterov", False), f"{where}.nesterov", "True for Nesterov momentum")
  if name == "sgd" and nesterov and not momentum:
    raise ConfigError(f"{where}.nesterov=True needs momentum, but {where}.momentum={momentum!r}; "
                      f"set {where}.momentum (e.g. 0.9) or nesterov=False.")
  if name == "lars" and momentum is None and "momentum" in cfg:
    raise ConfigError(f"{where}.momentum=None is not allowed for lars; use a number such as 0.9 "
                      f"(SimCLR's) or 0.")
  _number(cfg, "trust_coefficient", where, 1e-3, lo=0.0, lo_open=True, fix="SimCLR's LARS uses 1e-3")
  memory = cfg.get("memory_size", 10)
  if isinstance(memory, bool) or not isinstance(memory, numbers.Integral) or memory < 1:
    raise ConfigError(f"{where}.memory_size={memory!r} must be an integer >= 1 (L-BFGS history; "
                      f"default 10).")
  clip = _number(cfg, "grad_clip", where, 0.0, lo=0.0, allow_none=True,
                 fix="it is the max global gradient norm, e.g. 1.0 (0 = off)")
  rules = _parse_rules(cfg, where)
  if name == "lbfgs":
    if clip:
      raise ConfigError(f"{where}.grad_clip={clip!r} is not supported with lbfgs (its line search "
                        f"evaluates the unclipped objective); set {where}.grad_clip=0.")
    if rules:
      raise ConfigError(f"{where}.rules are not supported with lbfgs (one line search over all "
                        f"params); delete {where}.rules and give the optimizer only the params "
                        f"to optimize.")


# ----------------------------------------------------------------------------------------------
# Schedules.

def make_schedule(cfg: ml_collections.ConfigDict, num_steps: int,
                  where: str = "config.optim") -> optax.Schedule:
  """The learning-rate schedule: linear warm-up over cfg.warmup_steps from 0 to cfg.lr, then
  cfg.hold_frac of the remaining steps at cfg.lr, then cfg.schedule (constant | cosine | linear,
  decaying to lr * final_lr_frac at num_steps, | exponential, lr * cfg.decay_rate ** step | step,
  lr * step_factor ** (number of step_boundaries passed)).

  For lbfgs with lr None this is the constant 1.0: the step the line search starts from.
  """
  _validate_schedule(cfg, num_steps, where)
  lr = cfg.get("lr", None)
  if lr is None:
    return optax.constant_schedule(1.0)
  warmup = cfg.get("warmup_steps", 0)
  kind = cfg.get("schedule", "constant")
  frac = cfg.get("final_lr_frac", 0.0)
  # hold_frac: constant at lr for the first `hold` steps after the warm-up, then the decay over the rest.
  hold = int(round(cfg.get("hold_frac", 0.0) * max(num_steps - warmup, 0)))
  decay_steps = max(num_steps - warmup - hold, 1)
  if kind == "constant":
    main = optax.constant_schedule(lr)
  elif kind == "cosine":
    main = optax.cosine_decay_schedule(lr, decay_steps, alpha=frac)
  elif kind == "step":   # x step_factor at each boundary (counted from step 0, as the config says)
    factor = cfg.get("step_factor", 0.1)
    main = optax.piecewise_constant_schedule(
        lr, {int(b) - warmup: factor for b in cfg.get("step_boundaries", ())})
  elif kind == "exponential":   # lr * decay_rate ** step (PixelCNN++: 0.999995 per step)
    main = optax.exponential_decay(lr, transition_steps=1, decay_rate=cfg.get("decay_rate", 1.0))
  else:
    main = optax.linear_schedule(lr, lr * frac, decay_steps)
  if hold:
    main = optax.join_schedules([optax.constant_schedule(lr), main], [hold])
  if warmup:
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])
  return main


def learning_rate(cfg: ml_collections.ConfigDict, num_steps: int, step: Any,
                  where: str = "config.optim") -> jax.Array:
  """The schedule's value at `step` (int or int array; usable inside jit), float32 scalar. It does
  not include rules' lr_mult."""
  return jnp.asarray(make_schedule(cfg, num_steps, where)(step), jnp.float32)


# ----------------------------------------------------------------------------------------------
# Paths and labels.

def _key_str(k: Any) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def path_str(key_path: Sequence[Any]) -> str:
  """A jax key path as the "/"-joined string rules match, e.g. "mapping/Dense_0/kernel"."""
  return "/".join(_key_str(k) for k in key_path)


def _decide(rules: Sequence[Rule], path: str) -> Optional[Rule]:
  """The first rule whose pattern matches path, or None (defaults)."""
  for rule in rules:
    if rule.regex.search(path):
      return rule
  return None


def _labels(rules: Sequence[Rule], tree: PyTree) -> PyTree:
  def label(key_path, _):
    rule = _decide(rules, path_str(key_path))
    return _DEFAULT_LABEL if rule is None else rule.label
  return jax.tree_util.tree_map_with_path(label, tree)


def param_labels(params: PyTree, cfg: ml_collections.ConfigDict,
                 where: str = "config.optim") -> PyTree:
  """A tree like params of group labels (str), one per distinct (lr_mult, weight_decay, frozen):
  "frozen", or e.g. "lr_mult=0.01,decay=on". Params no rule matches get "lr_mult=1.0,decay=on"."""
  return _labels(_parse_rules(cfg, where), params)


def _leaves(params: PyTree) -> list[tuple[str, int]]:
  """(path, number of elements) of each leaf; works on arrays and jax.ShapeDtypeStruct."""
  flat, _ = jax.tree_util.tree_flatten_with_path(params)
  return [(path_str(p), int(np.prod(getattr(x, "shape", np.shape(x))))) for p, x in flat]


def check_rules(params: PyTree, cfg: ml_collections.ConfigDict, where: str = "config.optim") -> None:
  """Raises ConfigError for a rule that decides no param of `params`: its pattern matches no path
  (a typo), or every path it matches is taken by an earlier rule (first match wins)."""
  rules = _parse_rules(cfg, where)
  paths = [p for p, _ in _leaves(params)]
  decided = {id(r): 0 for r in rules}
  for path in paths:
    rule = _decide(rules, path)
    if rule is not None:
      decided[id(rule)] += 1
  examples = ", ".join(repr(p) for p in paths[:3]) or "none: the tree has no leaves"
  for i, rule in enumerate(rules):
    if rule.implicit or decided[id(rule)]:
      continue
    path = f"{where}.rules.{rule.name}.pattern"
    matched = [p for p in paths if rule.regex.search(p)]
    if not matched:
      raise ConfigError(f"{path}={rule.pattern!r} matches no parameter path (paths look like "
                        f"{examples}); fix the pattern or delete {where}.rules.{rule.name}.")
    first = _decide(rules[:i], matched[0])
    raise ConfigError(f"{path}={rule.pattern!r} decides no parameter: every path it matches (e.g. "
                      f"{matched[0]!r}) is taken by the earlier rule {first.name!r} (the first "
                      f"matching rule wins); reorder the rules, narrow "
                      f"{where}.rules.{first.name}.pattern, or delete {where}.rules.{rule.name}.")


def describe_rules(params: PyTree, cfg: ml_collections.ConfigDict,
                   where: str = "config.optim") -> str:
  """A short table for the log: each rule (and the default), the tensors / parameters it decides,
  its lr_mult, effective weight decay and whether it is frozen."""
  rules = _parse_rules(cfg, where)
  wd = cfg.get("weight_decay", 0.0) or 0.0
  counts = {r.name: [0, 0] for r in rules}
  counts[_DEFAULT] = [0, 0]
  for path, size in _leaves(params):
    rule = _decide(rules, path)
    c = counts[_DEFAULT if rule is None else rule.name]
    c[0] += 1
    c[1] += size
  rows = [("rule", "pattern", "tensors", "params", "lr_mult", "decay", "frozen")]
  default = Rule(_DEFAULT, "-", re.compile(""))
  for r in [*rules, default]:
    decay = wd if r.weight_decay and not r.frozen else 0.0
    rows.append((r.name, r.pattern if len(r.pattern) <= 40 else r.pattern[:37] + "...",
                 str(counts[r.name][0]), f"{counts[r.name][1]:,}", f"{r.lr_mult:g}", f"{decay:g}",
                 "yes" if r.frozen else "no"))
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
  lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                     for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
  return "\n".join(line.rstrip() for line in lines)


# ----------------------------------------------------------------------------------------------
# Optimizers.

def _base_optimizer(cfg, schedule: optax.Schedule, decay: bool) -> optax.GradientTransformation:
  """The named optimizer for one group; decay=False zeroes its weight decay (and, for lars, its
  trust-ratio adaptation)."""
  name = cfg.get("name", "adam")
  wd = (cfg.get("weight_decay", 0.0) or 0.0) if decay else 0.0
  nesterov = cfg.get("nesterov", False)
  b1, b2, eps = cfg.get("b1", 0.9), cfg.get("b2", 0.999), cfg.get("eps", 1e-8)
  if name == "adam":
    if nesterov:
      return optax.adam(schedule, b1=b1, b2=b2, eps=eps, nesterov=True)
    return optax.adam(schedule, b1=b1, b2=b2, eps=eps)
  if name == "adamw":
    return optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=wd, nesterov=nesterov)
  if name == "sgd":
    sgd = optax.sgd(schedule, momentum=cfg.get("momentum", None), nesterov=nesterov)
    return optax.chain(optax.add_decayed_weights(wd), sgd) if wd else sgd
  if name == "lars":
    momentum = cfg.get("momentum", None)
    return optax.lars(schedule, weight_decay=wd, trust_ratio_mask=decay,
                      trust_coefficient=cfg.get("trust_coefficient", 1e-3),
                      momentum=0.9 if momentum is None else momentum, nesterov=nesterov)
  raise AssertionError(name)  # validate_optimizer rejected it


def make_optimizer(cfg: ml_collections.ConfigDict, num_steps: int,
                   where: str = "config.optim") -> optax.GradientTransformation:
  """An optax optimizer from cfg (keys and rules: see the module docstring).

  The result's init / update take the params tree itself (rules are resolved from its paths when
  called), so it can be built before params exist. `init` raises ConfigError for a rule that
  decides no param (`check_rules`). Without rules (and not lars) it is the plain optax optimizer,
  chained after clip_by_global_norm if grad_clip is set, as before rules existed.

  lbfgs (optax.lbfgs, zoom line search) needs the objective at update time, as optax documents:
    value_and_grad = optax.value_and_grad_from_state(f)
    value, grad = value_and_grad(params, state=opt_state)
    updates, opt_state = tx.update(grad, opt_state, params, value=value, grad=grad, value_fn=f)
  It is a full-batch method (style transfer's image); with lr None the line search picks the step.

  Args:
    cfg: the optimizer config, e.g. config.optim or config.optim.generator.
    num_steps: the run's number of optimizer steps (sets the decay length; 0 = not training).
    where: the config path of cfg, used in error messages.
  """
  validate_optimizer(cfg, num_steps, where)
  name = cfg.get("name", "adam")
  if name == "lbfgs":
    lr = cfg.get("lr", None)
    return optax.lbfgs(None if lr is None else make_schedule(cfg, num_steps, where),
                       memory_size=cfg.get("memory_size", 10))
  schedule = make_schedule(cfg, num_steps, where)
  clip = cfg.get("grad_clip", 0.0)
  rules = _parse_rules(cfg, where)
  if not rules:
    opt = _base_optimizer(cfg, schedule, decay=True)
    return optax.chain(optax.clip_by_global_norm(clip), opt) if clip else opt

  transforms = {}
  for rule in [*rules, Rule(_DEFAULT, "", re.compile(""))]:
    if rule.label in transforms:
      continue
    if rule.frozen:
      tx = optax.set_to_zero()
    else:
      tx = _base_optimizer(cfg, schedule, decay=rule.weight_decay)
      if rule.lr_mult != 1.0:
        tx = optax.chain(tx, optax.scale(rule.lr_mult))  # every optimizer here is linear in lr
    transforms[rule.label] = tx
  labels: Callable[[PyTree], PyTree] = lambda tree: _labels(rules, tree)
  tx = optax.multi_transform(transforms, labels)
  if clip:
    trainable = lambda tree: jax.tree.map(lambda label: label != _FROZEN, labels(tree))
    tx = optax.chain(optax.masked(optax.clip_by_global_norm(clip), trainable), tx)

  def init(params: PyTree) -> optax.OptState:
    check_rules(params, cfg, where)
    return tx.init(params)

  return optax.GradientTransformationExtraArgs(init, tx.update)
