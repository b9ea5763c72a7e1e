"""The training loop: resume, preemption, corrupt checkpoints, NaN stop, multi-process equality, modes.

Uses the toy method (tests/toy_method.py) on the embedded shapes dataset so each run takes seconds.
"""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxgen import checkpoint, config_check, main, parallel, train
from jaxgen.methods.base import ConfigError
from toy_method import toy_config

REPO = pathlib.Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"


def _losses(workdir) -> dict[int, float]:
  """step -> loss from metrics.jsonl (later lines win: a resumed run rewrites steps after its checkpoint)."""
  out = {}
  for line in open(os.path.join(workdir, "metrics.jsonl")):
    rec = json.loads(line)
    if "loss" in rec:
      out[rec["step"]] = rec["loss"]
  return out


def _env(devices: int = 2) -> dict:
  env = dict(os.environ)
  env["PYTHONPATH"] = f"{TESTS}{os.pathsep}{env.get('PYTHONPATH', '')}"
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  env["JAX_PLATFORMS"] = "cpu"
  return env


def _cmd(workdir, *flags) -> list[str]:
  return [sys.executable, "-m", "jaxgen.main", f"--config={TESTS / 'toy_config.py'}",
          f"--workdir={workdir}", *flags]


def _wait_for_step(workdir, step: int, proc, timeout: float = 120.0) -> None:
  path = os.path.join(workdir, "metrics.jsonl")
  t0 = time.time()
  while time.time() - t0 < timeout:
    if proc.poll() is not None:
      raise AssertionError(f"run exited early with {proc.returncode}")
    if os.path.exists(path) and max(_losses(workdir), default=0) >= step:
      return
    time.sleep(0.1)
  raise AssertionError(f"step {step} not reached in {timeout} s")


# ---------------------------------------------------------------------------------------------- config
def test_config_validation_names_value_and_fix():
  with pytest.raises(ConfigError, match=r"config.method='nope'.*Known methods"):
    config_check.validate(toy_config(method="nope"))
  with pytest.raises(ConfigError, match=r"train.batch_size=3 is not divisible by the 2 devices.*multiple of 2"):
    config_check.validate(toy_config(**{"train.batch_size": 3}))
  with pytest.raises(ConfigError, match=r"image_size=10 must be a multiple of 4"):
    config_check.validate(toy_config(**{"data.image_size": 10}))
  with pytest.raises(ConfigError, match=r"mesh data=3"):
    config_check.validate(toy_config(**{"mesh.data": 3}))
  with pytest.raises(ConfigError, match=r"nosuch"):
    config_check.validate(toy_config(**{"data.source": "nosuch"}))
  with pytest.raises(ConfigError, match=r"unknown names \['fd'\]"):
    config_check.validate(toy_config(**{"eval.metrics": ("fd",)}))


def test_inception_score_without_its_weights_fails_before_compiling(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXGEN_CACHE", str(tmp_path))
  monkeypatch.delenv("JAXGEN_INCEPTION_WEIGHTS", raising=False)
  with pytest.raises(ConfigError, match=r"includes 'is'.*pt_inception-2015-12-05.*JAXGEN_INCEPTION_WEIGHTS"):
    config_check.validate(toy_config(**{"eval.metrics": ("fid", "is")}))
  weights_file = tmp_path / "pt_inception.pth"
  weights_file.write_bytes(b"x")
  monkeypatch.setenv("JAXGEN_INCEPTION_WEIGHTS", str(weights_file))
  config_check.validate(toy_config(**{"eval.metrics": ("fid", "is")}))


def test_cli_reports_config_error_before_compiling(tmp_path):
  t0 = time.time()
  proc = subprocess.run(_cmd(tmp_path, "--config.train.batch_size=3"), env=_env(), capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == 2
  assert "batch_size=3 is not divisible" in proc.stderr
  assert not (tmp_path / "checkpoints").exists()
  assert time.time() - t0 < 60


def test_fsdp_shards_large_params_only():
  mesh = jax.make_mesh((1, 2, 1), ("data", "fsdp", "model"),
                       axis_types=(jax.sharding.AxisType.Auto,) * 3)
  tree = {"big": jax.ShapeDtypeStruct((3, 3, 64, 128), np.float32),
          "small": jax.ShapeDtypeStruct((128,), np.float32),
          "odd": jax.ShapeDtypeStruct((129, 129), np.float32)}
  specs = jax.tree.map(lambda s: s.spec, parallel.state_sharding(mesh, tree))
  assert specs["big"] == jax.sharding.PartitionSpec(None, None, None, "fsdp")
  assert specs["small"] == jax.sharding.PartitionSpec()
  assert specs["odd"] == jax.sharding.PartitionSpec()


# ---------------------------------------------------------------------------------------------- train loop
def test_train_resume_eval_sample_in_process(tmp_path):
  wd = str(tmp_path)
  cfg = toy_config()
  main.run(cfg, wd, "train")
  losses = _losses(wd)
  assert sorted(losses) == list(range(1, 11))
  assert np.mean([losses[s] for s in (8, 9, 10)]) < np.mean([losses[s] for s in (1, 2, 3)])
  assert sorted(int(p) for p in os.listdir(tmp_path / "checkpoints")) == [4, 8, 10]
  assert sorted(os.listdir(tmp_path / "samples")) == ["step_00000005.png", "step_00000010.png"]
  # Continue to 14: resumes at 10, does not redo steps.
  main.run(toy_config(**{"train.num_steps": 14}), wd, "train")
  lines = [json.loads(l)["step"] for l in open(tmp_path / "metrics.jsonl")]
  assert lines == list(range(1, 15))
  res = main.run(cfg, wd, "eval")
  assert res["num_eval_examples"] == 20 and 0 < res["mse"] < 1
  assert json.load(open(tmp_path / "eval" / "metrics.json"))["step"] == 14
  path = main.run(cfg, wd, "sample", num_samples=5)
  arr = np.load(path + ".npz")["image"]
  assert arr.shape == (5, 8, 8, 3) and arr.dtype == np.uint8


def test_sigkill_resume_reproduces_uninterrupted_losses(tmp_path):
  ref, run = str(tmp_path / "ref"), str(tmp_path / "run")
  flags = ["--config.train.num_steps=12", "--config.train.ckpt_every=4", "--config.model.sleep_s=0.25"]
  subprocess.run(_cmd(ref, *flags[:2]), env=_env(), check=True, capture_output=True, timeout=300)
  proc = subprocess.Popen(_cmd(run, *flags), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  _wait_for_step(run, 7, proc)
  proc.kill()   # SIGKILL: no chance to save
  proc.wait()
  steps_before = max(_losses(run))
  assert steps_before < 12
  saved = checkpoint.Checkpointer(run).all_steps()
  assert saved and max(saved) % 4 == 0 and 4 <= max(saved) <= steps_before
  subprocess.run(_cmd(run, *flags[:2]), env=_env(), check=True, capture_output=True, timeout=300)
  a, b = _losses(ref), _losses(run)
  assert sorted(b) == list(range(1, 13))
  for s in range(1, 13):
    np.testing.assert_allclose(b[s], a[s], rtol=1e-6, err_msg=f"step {s}")


def test_sigterm_saves_checkpoint_then_exits(tmp_path):
  wd = str(tmp_path)
  proc = subprocess.Popen(_cmd(wd, "--config.train.num_steps=1000", "--config.train.ckpt_every=100",
                               "--config.model.sleep_s=0.1"),
                          env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  _wait_for_step(wd, 3, proc)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err[-2000:]
  saved = checkpoint.Checkpointer(wd).all_steps()
  assert len(saved) == 1 and 3 <= saved[0] < 100
  assert "Stopped at step" in err


def test_truncated_latest_checkpoint_is_skipped(tmp_path):
  wd = str(tmp_path)
  cfg = toy_config(**{"train.num_steps": 8, "train.sample_every": 0})
  main.run(cfg, wd, "train")
  # Truncate every data file of the latest checkpoint (as a kill mid-write on a non-atomic FS would).
  for root, _, files in os.walk(tmp_path / "checkpoints" / "8"):
    for f in files:
      if "ocdbt" in root or f.startswith("d") or root.endswith("/d"):
        with open(os.path.join(root, f), "r+b") as fh:
          fh.truncate(3)
  method = config_check.validate(cfg)
  mesh = parallel.create_mesh(cfg.mesh)
  state, _, ckpt = train.restore_or_init(method, cfg, mesh, wd)
  ckpt.close()
  assert int(state.step) == 4
  assert (tmp_path / "checkpoints_corrupt" / "8").is_dir()   # moved aside, not deleted
  # Training continues from 4 and can save step 8 again.
  main.run(cfg, wd, "train")
  assert 8 in checkpoint.Checkpointer(wd).all_steps()


def test_checkpoint_of_another_config_is_an_error_not_corrupt(tmp_path):
  """A readable checkpoint whose params differ in shape from the config's model (a changed width or
  prng_impl) raises CheckpointError naming the leaf and the fix, and stays where it is."""
  wd = str(tmp_path)
  cfg = toy_config(**{"train.num_steps": 4, "train.sample_every": 0})
  main.run(cfg, wd, "train")
  wider = toy_config(**{"train.num_steps": 8, "train.sample_every": 0,
                        "data.channels": 4 - cfg.data.channels})   # a first conv of another shape
  method = config_check.validate(wider)
  with pytest.raises(checkpoint.CheckpointError,
                     match=r"Checkpoint 4 .* different model or config: .*saved \(.*this config .*new --workdir"):
    train.restore_or_init(method, wider, parallel.create_mesh(wider.mesh), wd)
  assert checkpoint.Checkpointer(wd).all_steps() == [4]
  assert not (tmp_path / "checkpoints_corrupt").exists()


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  wd = str(tmp_path)
  cfg = toy_config(**{"train.num_steps": 20, "train.ckpt_every": 2, "model.nan_after": 5,
                      "train.sample_every": 0})
  with pytest.raises(train.NonFiniteLossError, match=r"Loss is nan at step 6.*last good checkpoint \(step 4\)"):
    main.run(cfg, wd, "train")
  assert checkpoint.Checkpointer(wd).all_steps() == [2, 4]
  method = config_check.validate(cfg)
  state, _, ckpt = train.restore_or_init(method, cfg, parallel.create_mesh(cfg.mesh), wd)
  ckpt.close()
  assert int(state.step) == 4
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.params))


def test_two_processes_equal_one_process(tmp_path):
  """2 processes x 2 CPU devices == 1 process x 4 devices: same global batch, same seed, same losses."""
  flags = ["--config.train.num_steps=6", "--config.train.sample_every=3"]
  one, two = tmp_path / "one", tmp_path / "two"
  subprocess.run(_cmd(one, *flags), env=_env(devices=4), check=True, capture_output=True, timeout=300)
  env = _env()
  env.pop("XLA_FLAGS")
  proc = subprocess.run(["bash", str(REPO / "launch" / "multiprocess_cpu.sh"), "2", "2",
                         str(TESTS / "toy_config.py"), str(two), *flags],
                        env=env, capture_output=True, text=True, timeout=300)
  logs = "".join(open(p).read()[-3000:] for p in sorted(two.glob("process_*.log")))
  assert proc.returncode == 0, logs
  a, b = _losses(one), _losses(two)
  assert sorted(a) == sorted(b) == list(range(1, 7))
  for s in a:
    np.testing.assert_allclose(b[s], a[s], rtol=1e-5, err_msg=f"step {s}")
  assert (two / "samples" / "step_00000006.png").exists()
  assert checkpoint.Checkpointer(str(two)).all_steps() == [4, 6]

  # --mode eval with FID: 2 processes split the Inception batches over the 4-device mesh (and compute
  # the reference statistics in their own cache) and agree with 1 process.
  from jaxgen.metrics import weights
  try:
    trunk = str(weights.default_weights_file())
  except weights.WeightsError as e:
    pytest.skip(f"Inception weights unavailable: {e}")
  eval_flags = [*flags, "--mode=eval", "--config.eval.metrics=('fid',)", "--config.eval.num_samples=0",
                "--config.eval.fid_num_samples=16", "--config.eval.reference_num_examples=16",
                "--config.eval.reference_split=train"]
  env1 = _env(devices=4) | {"JAXGEN_CACHE": str(tmp_path / "cache1"), "JAXGEN_INCEPTION_WEIGHTS": trunk}
  subprocess.run(_cmd(one, *eval_flags), env=env1, check=True, capture_output=True, timeout=300)
  env2 = env | {"JAXGEN_CACHE": str(tmp_path / "cache2"), "JAXGEN_INCEPTION_WEIGHTS": trunk}
  proc = subprocess.run(["bash", str(REPO / "launch" / "multiprocess_cpu.sh"), "2", "2",
                         str(TESTS / "toy_config.py"), str(two), *eval_flags],
                        env=env2, capture_output=True, text=True, timeout=300)
  logs = "".join(open(p).read()[-3000:] for p in sorted(two.glob("process_*.log")))
  assert proc.returncode == 0, logs
  fid1 = json.load(open(one / "eval" / "metrics.json"))["fid"]
  fid2 = json.load(open(two / "eval" / "metrics.json"))["fid"]
  assert fid1 > 1.0 and fid2 == pytest.approx(fid1, rel=1e-4)
  assert len(list((tmp_path / "cache2" / "fid_stats").glob("*.npz"))) == 1


def test_benchmark_mode_reports_figures(tmp_path):
  res = main.run(toy_config(**{"benchmark.steps": 3, "benchmark.sample_batch": 4}), str(tmp_path),
                 "benchmark")
  assert res["sample_batch"] == 4 and res["sample_s"] > 0
  assert res["sample_images_per_s"] == pytest.approx(4 / res["sample_s"])
  assert res["flops_per_step_per_device"] > 0 and res["images_per_s"] > 0
  assert res["num_params"] == 3 * 3 * 3 * 8 + 8 + 3 * 3 * 8 * 3 + 3
  assert len(res["step_s_all"]) == 3 and np.isfinite(res["final_loss"])
  assert json.load(open(tmp_path / "benchmark.json"))["global_batch"] == 8
  with pytest.raises(ConfigError, match="config.benchmark.sample_batch=3"):
    main.run(toy_config(**{"benchmark.sample_batch": 3}), str(tmp_path), "benchmark")
  # CPU time is the process's, not the wall clock: a step that sleeps 0.3 s on the host (the toy's
  # debug callback) takes >= 0.3 s of wall time per step and almost no CPU time.
  res = main.run(toy_config(**{"benchmark.steps": 2, "model.sleep_s": 0.3}), str(tmp_path / "sleep"),
                 "benchmark")
  assert res["step_s_median"] >= 0.3 and res["step_cpu_s_median"] < res["step_s_median"] - 0.2
