"""Orbax checkpoints of the whole TrainState: async save, keep N, restore onto any mesh.

Each checkpoint holds two items: "state" (the TrainState without its frozen pretrained trees, which
belong to other runs or files) and "config" (the run's config as JSON), so a checkpoint describes
itself: another run can load a subtree of it knowing only its workdir (jaxgen.pretrained).

A checkpoint that cannot be restored (a run killed mid-save on a filesystem without atomic renames,
a truncated or corrupted file) is skipped in favour of the previous good one, with a warning. It is
moved aside to `<workdir>/checkpoints_corrupt/<step>` (never deleted), so its step number can be
saved again and nothing already written is lost. A readable checkpoint of another model (the
config changed: a width, the PRNG implementation) is not corrupt: restoring it raises CheckpointError
naming the differing leaves, and nothing moves.
"""
import json
import os
import shutil
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp
from absl import logging

from jaxgen.errors import CheckpointError  # noqa: F401  (re-exported)
from jaxgen.state import TrainState


def _quiet_orbax(record) -> bool:
  """Drops orbax's INFO chatter (dozens of lines per save) so the trainer's progress lines stay
  readable; its warnings and errors still show."""
  return record.levelno >= 30 or "orbax" not in record.pathname


logging.get_absl_logger().addFilter(_quiet_orbax)


class Checkpointer:
  """Wraps orbax's CheckpointManager for `<workdir>/checkpoints`."""

  def __init__(self, workdir: str, *, keep: int = 3, async_save: bool = True, config=None,
               create: bool = True):
    """config: the run's ConfigDict, saved as JSON beside every state (None: "{}").
    create=False reads an existing run without creating directories (pretrained loading)."""
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.corrupt_dir = os.path.abspath(os.path.join(workdir, "checkpoints_corrupt"))
    self._config_json = json.loads(config.to_json_best_effort()) if config is not None else {}
    self._manager = ocp.CheckpointManager(
        self.directory, item_names=("state", "config"),
        item_handlers={"state": ocp.PyTreeCheckpointHandler(),
                       "config": ocp.JsonCheckpointHandler()},
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=create,
                                             enable_async_checkpointing=async_save))

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> Optional[int]:
    steps = self.all_steps()
    return steps[-1] if steps else None

  def save(self, state: TrainState, *, force: bool = False) -> bool:
    """Starts an (async) save of `state` at its step. Returns False if that step is already saved."""
    step = int(jax.device_get(state.step))
    if step in self._manager.all_steps():
      return False
    return self._manager.save(step, force=force, args=ocp.args.Composite(
        state=ocp.args.PyTreeSave(state.replace(frozen={})),
        config=ocp.args.JsonSave(self._config_json)))

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  def restore(self, abstract_state: Any, step: Optional[int] = None) -> Optional[TrainState]:
    """Restores onto the shardings in `abstract_state` (jax.ShapeDtypeStruct leaves with .sharding).

    step=None: the latest checkpoint that restores, skipping (and moving aside) broken ones; None if
    there is no checkpoint at all. An explicit step that is missing or broken raises CheckpointError.
    """
    steps = self.all_steps()
    if step is not None:
      if step not in steps:
        raise CheckpointError(f"No checkpoint for step {step} in {self.directory}; "
                              f"available steps: {steps}.")
      self._check_matches(abstract_state, step)
      try:
        return self._restore(abstract_state, step)
      except Exception as e:  # pylint: disable=broad-except
        raise CheckpointError(f"Checkpoint {step} in {self.directory} cannot be restored ({e!r}); "
                              f"pick another of {steps} with --checkpoint_step.") from e
    for s in reversed(steps):
      # A readable checkpoint of another model (the config changed, not the files) is an error,
      # never "corrupt": moving it aside and starting afresh would hide a run's checkpoints.
      self._check_matches(abstract_state, s)
      try:
        return self._restore(abstract_state, s)
      except Exception as e:  # pylint: disable=broad-except
        logging.warning("Checkpoint at step %d in %s is partial or corrupt and is skipped (%r); "
                        "trying the previous one.", s, self.directory, e)
        self._move_aside(s)
    return None

  def _check_matches(self, abstract_state: Any, step: int) -> None:
    """Raises CheckpointError when checkpoint `step` holds a readable state whose params, EMA, model
    state or key differ in names or shapes from `abstract_state` (a changed config: model width,
    prng_impl, ...); returns when they agree or when the metadata cannot be read (then restoring
    fails and the checkpoint counts as corrupt)."""
    try:
      saved = _leaf_shapes(self.tree_metadata(step))
    except Exception:  # pylint: disable=broad-except
      return
    want = _leaf_shapes(abstract_state.replace(frozen={}))
    diffs = [f"{k}: saved {saved.get(k, 'absent')}, this config {want.get(k, 'absent')}"
             for k in sorted(set(saved) | set(want)) if saved.get(k) != want.get(k)]
    if diffs:
      more = f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else ""
      raise CheckpointError(
          f"Checkpoint {step} in {self.directory} was saved by a different model or config: "
          f"{'; '.join(diffs[:3])}{more}. Resume with the config it was trained with (saved with it, "
          f"in {os.path.join(self.directory, str(step), 'config')}), or train this config in a new "
          "--workdir. Nothing was changed on disk.")

  def _restore(self, abstract_state: Any, step: int) -> TrainState:
    """abstract_state's frozen trees are not in checkpoints: restored without them, kept as given."""
    frozen, target = abstract_state.frozen, abstract_state.replace(frozen={})
    state = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        target, restore_args=ocp.checkpoint_utils.construct_restore_args(target))))["state"]
    return state.replace(frozen=frozen)

  def saved_config(self, step: int) -> dict:
    """The config saved with checkpoint `step`, as a JSON dict ({} when none was given)."""
    return self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]

  def tree_metadata(self, step: int) -> dict:
    """The saved state's tree as nested dicts (field names of TrainState at the top) of leaves with
    .shape and .dtype, read without loading any array."""
    return self._manager.item_metadata(step)["state"].tree

  def restore_subtree(self, step: int, target: dict) -> dict:
    """Restores only the leaves in `target` (nested dicts from the top of the saved state, e.g.
    {"ema_params": {...}}, of jax.ShapeDtypeStruct with .sharding), onto those shardings."""
    restore_args = jax.tree.map(lambda s: ocp.ArrayRestoreArgs(sharding=s.sharding), target)
    return self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        target, restore_args=restore_args, partial_restore=True)))["state"]

  def _move_aside(self, step: int) -> None:
    src = os.path.join(self.directory, str(step))
    if jax.process_index() == 0 and os.path.isdir(src):
      os.makedirs(self.corrupt_dir, exist_ok=True)
      dst = os.path.join(self.corrupt_dir, str(step))
      if os.path.exists(dst):
        dst += f".{len(os.listdir(self.corrupt_dir))}"
      shutil.move(src, dst)
      logging.warning("Moved unreadable checkpoint %s to %s.", src, dst)
    # Re-read the directory so orbax does not consider the moved step.
    self._manager.reload()


# TrainState fields whose leaves have stable names in both the state and orbax's metadata.
_CHECKED_FIELDS = ("step", "params", "ema_params", "model_state", "rng")


def _leaf_shapes(tree: Any) -> dict[str, tuple]:
  """"field/key/..." -> shape of each leaf under _CHECKED_FIELDS, for a TrainState (of arrays or
  ShapeDtypeStructs) or the nested dicts of its saved metadata."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    names = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
    if names and names[0] in _CHECKED_FIELDS:
      out["/".join(names)] = tuple(getattr(leaf, "shape", ()))
  return out
