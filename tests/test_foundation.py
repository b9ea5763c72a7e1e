"""Foundation II: sharded sampling, frozen parts as arguments, pretrained parts from other runs, lazy
metrics, several steps per dispatch, EMA schedules, config args, and the defects they fixed."""
import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import Mesh

from jaxgen import checkpoint, config_check, images, main, parallel, pretrained, registry, sampling, train
from jaxgen.configs import load_config_file, parse_arg
from jaxgen.diffusion.defaults import diffusion_base_config
from jaxgen.errors import ConfigError
from jaxgen.methods.diffusion import Diffusion
from jaxgen.state import TrainState, ema_decay, jit_once
from test_train import REPO, _env, _losses
from toy_method import toy_config


def _mesh(num_devices: int) -> Mesh:
  devices = np.array(jax.devices()[:num_devices]).reshape(num_devices, 1, 1)
  return Mesh(devices, ("data", "fsdp", "model"))


def _conv_batch_sizes(hlo: str) -> set[int]:
  """Leading dimensions of every convolution's output in an HLO module's text."""
  return {int(m) for m in re.findall(r"= f32\[(\d+),[\d,]+\]\{[^}]*\} convolution\(", hlo)}


# ------------------------------------------------------------------------------------ sharded sampling
def _cfg_ddim_method() -> Diffusion:
  c = diffusion_base_config()
  c.data.image_size, c.data.channels, c.data.num_classes = 8, 1, 10
  c.model.ch, c.model.ch_mult, c.model.num_res_blocks = 8, (1,), 1
  c.model.attn_resolutions, c.model.num_groups, c.model.dropout = (), 4, 0.0
  c.diffusion.timesteps, c.diffusion.class_conditional, c.diffusion.label_dropout = 10, True, 0.1
  c.sample.sampler, c.sample.steps, c.sample.guidance_scale = "ddim", 4, 2.0
  c.sample.progress = False
  c.optim.warmup_steps = 0
  return Diffusion(c)


def test_sampler_splits_the_batch_over_devices_and_matches_one_device():
  """DDIM + classifier-free guidance on 2 devices: every convolution of the compiled sampler sees
  num / 2 samples (x2 for the guided pair), not num (the replicated sampler ran all 16 per device),
  and the samples equal the 1-device ones."""
  method = _cfg_ddim_method()
  num = 8
  batch = {"image": jnp.zeros((4, 8, 8, 1)), "label": jnp.zeros((4,), jnp.int32)}
  state = jit_once(method.init)(jax.random.PRNGKey(0), batch)
  key = jax.random.PRNGKey(1)
  out = {}
  for devices in (2, 1):
    mesh = _mesh(devices)
    cond = parallel.global_batch(method.default_cond(num), mesh)
    fn = sampling.make_sampler(method, mesh, num)
    hlo = fn.lower(state, key, cond).compile().as_text()
    assert _conv_batch_sizes(hlo) == {2 * num // devices}, (devices, _conv_batch_sizes(hlo))
    samples = fn(state, key, cond)
    assert samples.sharding.spec == parallel.batch_sharding(mesh).spec
    out[devices] = sampling.to_host(samples)
  np.testing.assert_allclose(out[2], out[1], atol=1e-5)
  assert out[2].shape == (num, 8, 8, 1) and np.all(np.abs(out[2]) <= 1.0)


# ------------------------------------------------------------------------------------ frozen parts
def _teacher_run(tmp_path, name="teacher", steps=4) -> str:
  wd = str(tmp_path / name)
  main.run(toy_config(**{"train.num_steps": steps, "train.sample_every": 0}), wd, "train")
  return wd


def test_frozen_part_is_an_argument_not_a_constant():
  """The compiled step's HLO does not grow with the frozen network's size (params are arguments);
  closing over the same params (the old classifier-guidance path) does, by the size of the weights."""
  sizes, closed = {}, {}
  for width in (8, 512):
    cfg = toy_config(**{"model.teacher_width": width})
    method = registry.create_method(cfg)
    mesh = parallel.create_mesh(cfg.mesh)
    example = {"image": np.zeros((8, 8, 8, 3), np.float32)}
    _, abstract, shardings = train.create_state(method, cfg, mesh, example)
    step = train.compile_train_step(method, cfg, mesh, shardings)
    sizes[width] = len(step.lower(abstract, parallel.abstract_batch(example, mesh)).as_text())
    teacher = jax.tree.map(lambda a: jax.random.normal(jax.random.PRNGKey(0), a.shape, a.dtype),
                           abstract.frozen["teacher"])
    closed[width] = len(jax.jit(lambda x: method.teacher.apply({"params": teacher}, x, train=False))
                        .lower(jnp.zeros((1, 8, 8, 3))).as_text())
  assert sizes[512] < 1.02 * sizes[8], sizes
  # The control: closed over, the weights (2 x 3x3x3 x 512 floats) are in the program as constants.
  assert closed[512] > closed[8] + 2 * 3 * 3 * 3 * 504 * 4, closed


def test_frozen_part_from_another_run(tmp_path):
  teacher_wd = _teacher_run(tmp_path)
  wd = str(tmp_path / "student")
  cfg = toy_config(**{"model.teacher_width": 8, "pretrained.teacher.workdir": teacher_wd,
                      "train.num_steps": 4, "train.sample_every": 2})
  state = main.run(cfg, wd, "train")
  # The frozen tree is the teacher run's EMA (its sampling params), on the mesh, unchanged by training.
  teacher = checkpoint.Checkpointer(teacher_wd, create=False)
  want = teacher.restore_subtree(4, {"ema_params": jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=parallel.replicated(parallel.create_mesh(cfg.mesh))),
      state.frozen["teacher"])})["ema_params"]
  teacher.close()
  for a, b in zip(jax.tree.leaves(state.frozen["teacher"]), jax.tree.leaves(want)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # It is not in this run's checkpoints, and the checkpoint carries the run's config.
  ckpt = checkpoint.Checkpointer(wd, create=False)
  assert not ckpt.tree_metadata(4).get("frozen")
  assert ckpt.saved_config(4)["pretrained"]["teacher"]["workdir"] == teacher_wd
  ckpt.close()
  # eval and sample modes get it too.
  assert main.run(cfg, wd, "eval")["mse"] > 0
  assert np.load(main.run(cfg, wd, "sample", num_samples=3) + ".npz")["image"].shape == (3, 8, 8, 3)

  with pytest.raises(ConfigError, match=r"pretrained.teacher.workdir='/nonexistent' holds no checkpoints"):
    config_check.validate(toy_config(**{"model.teacher_width": 8, "pretrained.teacher.workdir": "/nonexistent"}))
  with pytest.raises(ConfigError, match=r"pretrained.teacher.step=3 is not saved .*saved steps: \[4\]"):
    config_check.validate(toy_config(**{"model.teacher_width": 8, "pretrained.teacher.workdir": teacher_wd,
                                        "pretrained.teacher.step": 3}))
  bad = toy_config(**{"model.teacher_width": 16, "pretrained.teacher.workdir": teacher_wd})
  with pytest.raises(ConfigError, match=r"\['Conv_0'\]\['bias'\] has shape \(8,\) but the model expects \(16,\)"):
    main.run(bad, str(tmp_path / "bad"), "train")
  assert not (tmp_path / "bad" / "checkpoints").exists() or not os.listdir(tmp_path / "bad" / "checkpoints")
  with pytest.raises(ConfigError, match=r"needs the frozen network config.pretrained.teacher"):
    config_check.validate(toy_config(**{"model.teacher_width": 8}))
  with pytest.raises(ConfigError, match=r"uses no frozen part 'teacher'"):
    config_check.validate(toy_config(**{"pretrained.teacher.workdir": teacher_wd}))


def test_init_from_another_run_on_fresh_start_only(tmp_path):
  source = _teacher_run(tmp_path, "source")

  def cfg(steps):
    c = toy_config(**{"train.num_steps": steps, "train.sample_every": 0, "train.ckpt_every": 4})
    c.pretrained.init = pretrained.part_defaults()
    c.pretrained.init.update(dict(workdir=source, tree="params", frozen=False, into=""))
    return c

  method = config_check.validate(cfg(8))
  mesh = parallel.create_mesh(cfg(8).mesh)
  state, _, ckpt = train.restore_or_init(method, cfg(8), mesh, str(tmp_path / "fresh"))
  ckpt.close()
  src_ckpt = checkpoint.Checkpointer(source, create=False)
  src = src_ckpt.restore_subtree(4, {"params": jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), state.params)})["params"]
  src_ckpt.close()
  for a, b, e in zip(jax.tree.leaves(state.params), jax.tree.leaves(src), jax.tree.leaves(state.ema_params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(e), np.asarray(b))   # the EMA starts there too
  assert int(state.step) == 0
  # A resumed run continues from its own checkpoint (re-initialising from `source` would change the
  # losses after the resume).
  main.run(cfg(8), str(tmp_path / "straight"), "train")
  main.run(cfg(4), str(tmp_path / "resumed"), "train")
  main.run(cfg(8), str(tmp_path / "resumed"), "train")
  a, b = _losses(tmp_path / "straight"), _losses(tmp_path / "resumed")
  assert sorted(a) == sorted(b) == list(range(1, 9))
  for s in a:
    np.testing.assert_allclose(b[s], a[s], rtol=1e-6, err_msg=f"step {s}")
  c = cfg(8)
  c.pretrained.init.into = "Conv_9"
  with pytest.raises(ConfigError, match=r"into='Conv_9' in this run's params: no 'Conv_9'"):
    main.run(c, str(tmp_path / "bad_into"), "train")


def test_file_part_and_converter_errors(tmp_path):
  tree = {"Conv_0": {"kernel": np.ones((3, 3, 3, 8), np.float32), "bias": np.zeros((8,), np.float32)},
          "Conv_1": {"kernel": np.ones((3, 3, 8, 3), np.float32), "bias": np.zeros((3,), np.float32)}}
  path = str(tmp_path / "teacher.npz")
  pretrained.save_npz(path, tree)
  cfg = toy_config(**{"model.teacher_width": 8, "pretrained.teacher.file": path,
                      "pretrained.teacher.converter": "npz"})
  method = config_check.validate(cfg)
  mesh = parallel.create_mesh(cfg.mesh)
  frozen = pretrained.load_frozen(cfg, method.frozen_parts(), mesh)
  np.testing.assert_array_equal(np.asarray(frozen["teacher"]["Conv_0"]["kernel"]), tree["Conv_0"]["kernel"])
  with pytest.raises(ConfigError, match=r"file='/no/such.npz' does not exist"):
    config_check.validate(toy_config(**{"model.teacher_width": 8, "pretrained.teacher.file": "/no/such.npz",
                                        "pretrained.teacher.converter": "npz"}))
  with pytest.raises(ConfigError, match=r"converter='safetensorz' is unknown"):
    config_check.validate(toy_config(**{"model.teacher_width": 8, "pretrained.teacher.file": path,
                                        "pretrained.teacher.converter": "safetensorz"}))
  corrupt = tmp_path / "corrupt.npz"
  corrupt.write_bytes(open(path, "rb").read()[:100])
  cfg = toy_config(**{"model.teacher_width": 8, "pretrained.teacher.file": str(corrupt),
                      "pretrained.teacher.converter": "npz"})
  with pytest.raises(ConfigError, match=r"corrupt.npz' cannot be read by converter 'npz'"):
    pretrained.load_frozen(cfg, method.frozen_parts(), mesh)


# ------------------------------------------------------------------------------------ the loop
def test_lazy_metrics_norms_and_lr_in_the_log(tmp_path):
  cfg = toy_config(**{"model.lazy_every": 3, "train.log_every": 6, "train.num_steps": 12,
                      "train.sample_every": 0})
  cfg.optim.warmup_steps = 10
  main.run(cfg, str(tmp_path), "train")
  rows = {r["step"]: r for r in map(json.loads, open(tmp_path / "metrics.jsonl"))}
  # Computed before steps 0 and 3 (logged at 6) and 6 and 9 (logged at 12): NaNs left out.
  assert rows[6]["lazy"] == 1.5 and rows[12]["lazy"] == 7.5
  assert rows[6]["lr"] == pytest.approx(1e-2 * 6 / 10) and rows[12]["lr"] == pytest.approx(1e-2)
  assert 0 < rows[12]["update_norm"] < rows[12]["param_norm"]


def test_norms_only_on_logged_steps():
  """make_step_fn computes the parameter and update norms on steps that end a log interval (and
  the last step), NaN on the others (the loop's averages skip NaN)."""
  class Doubling:
    def train_step(self, state, batch, rng):
      return state.replace(step=state.step + 1, params=jax.tree.map(lambda p: 2 * p, state.params)), {}
  cfg = ml_collections.ConfigDict({"train": {"log_every": 4, "num_steps": 10, "log_norms": True}})
  step_fn = jax.jit(train.make_step_fn(Doubling(), cfg))
  params = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([[12.0]])}            # norm 13
  for step, logged in [(0, False), (3, True), (5, False), (7, True), (9, True)]:
    state = TrainState.create(params=params, opt_state=(), rng=jax.random.PRNGKey(0),
                              model_state={}, ema_params=None).replace(step=jnp.int32(step))
    _, metrics = step_fn(state, {})
    if logged:
      assert float(metrics["param_norm"]) == pytest.approx(26.0)
      assert float(metrics["update_norm"]) == pytest.approx(13.0)
    else:
      assert np.isnan(metrics["param_norm"]) and np.isnan(metrics["update_norm"])


def test_several_steps_per_dispatch_equal_single_steps(tmp_path):
  flags = {"train.num_steps": 7, "train.sample_every": 0, "train.ckpt_every": 4, "train.log_every": 2}
  main.run(toy_config(**flags), str(tmp_path / "one"), "train")
  main.run(toy_config(**flags, **{"train.steps_per_dispatch": 2}), str(tmp_path / "two"), "train")
  a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
  assert sorted(a) == sorted(b) == [2, 4, 6, 7]   # the last dispatch (step 7) is a single step
  for s in a:
    np.testing.assert_allclose(b[s], a[s], rtol=1e-5, err_msg=f"step {s}")
  assert checkpoint.Checkpointer(str(tmp_path / "two")).all_steps() == [4, 7]


def test_pair_grid_shows_inputs_beside_outputs():
  low = np.linspace(-1, 1, 2 * 2 * 2 * 1).reshape(2, 2, 2, 1).astype(np.float32)
  out = np.full((2, 4, 4, 3), 1.0, np.float32)
  grid = images.make_pair_grid([low], out, pad=0)
  assert grid.shape == (8, 8, 3)            # 2 tiles of (input | output) stacked, 1 per row
  np.testing.assert_array_equal(grid[0:2, 0:2, 0], images.to_uint8(low[0, :1, :1, 0]).repeat(2, 0).repeat(2, 1))
  assert np.all(grid[:, 4:] == 255)


# ------------------------------------------------------------------------------------ defects
def test_noisy_classifier_rejects_sampling_and_evaluates_without_it(tmp_path):
  path = str(REPO / "configs" / "diffusion" / "noisy_classifier_cifar10.py")
  for key, value, pattern in (("train.sample_every", 5, "sample_every=5"),
                              ("eval.num_samples", 64, "num_samples=64"),
                              ("eval.metrics", ("fid",), r"eval.metrics=\('fid',\)")):
    c = load_config_file(path + ":tiny")
    c[key.split(".")[0]][key.split(".")[1]] = value
    with pytest.raises(ConfigError, match=pattern + ".*draws no samples"):
      config_check.validate(c)
  c = load_config_file(path + ":tiny")
  c.data.update(dict(source="shapes", path="", image_size=16))
  c.train.update(dict(num_steps=2, eval_every=2, ckpt_every=0, log_every=1, batch_size=8))
  c.eval.update(dict(batch_size=8, num_examples=16))
  c.optim.warmup_steps = 0
  main.run(c, str(tmp_path), "train")   # reaches evaluate() at its eval_every: metrics, no sampling
  res = main.run(c, str(tmp_path), "eval")
  assert 0 <= res["accuracy"] <= 1 and res["num_eval_examples"] == 16
  with pytest.raises(ConfigError, match="--mode=sample.*draws no samples"):
    main.run(c, str(tmp_path), "sample")


@pytest.mark.parametrize("config,flag,message", [
    ("configs/dcgan/mnist.py:tiny", "--config.optim.generator.name=adamx",
     "config.optim.generator.name='adamx' is unknown"),
    ("configs/diffusion/shapes.py:tiny", "--config.model.dtype=float64",
     "config.model.dtype='float64' is not supported"),
    ("configs/diffusion/shapes.py:tiny", "--config.train.ema_schedule=linear",
     "config.train.ema_schedule='linear' is unknown"),
])
def test_cli_bad_values_exit_2_with_named_error(tmp_path, config, flag, message):
  proc = subprocess.run([sys.executable, "-m", "jaxgen.main", f"--config={REPO / config}",
                         f"--workdir={tmp_path}", "--mode=benchmark", flag],
                        env=_env(), capture_output=True, text=True, timeout=120, cwd=REPO)
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert message in proc.stderr and "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------ small pieces
def test_jit_once_equals_jit_and_nests_inside_jit():
  """jit_once (parameter init compiled without backend optimisation on CPU) gives jax.jit's values,
  called directly and traced inside another jit (where JAX rejects compiler_options on a nested jit,
  so it must fall back to a plain nested jit)."""
  import flax.linen as nn
  net = nn.Sequential([nn.Conv(8, (3, 3)), nn.relu, nn.Dense(4)])
  init = lambda k: net.init(k, jnp.zeros((1, 8, 8, 3)))["params"]  # noqa: E731
  key = jax.random.PRNGKey(3)
  want = jax.jit(init)(key)
  for got in (jit_once(init)(key), jax.jit(lambda k: jit_once(init)(k))(key)):
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
      np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-6, atol=1e-7)
  assert float(jnp.std(want["layers_0"]["kernel"])) > 0.01   # real random draws, not zeros


def test_ema_schedules_closed_form():
  tc = ml_collections.ConfigDict(dict(ema_decay=0.999, ema_schedule="constant", ema_kimg=10.0,
                                      ema_rampup=0.05))
  assert float(ema_decay(tc, jnp.int32(5), 32)) == pytest.approx(0.999)
  tc.ema_schedule = "warmup"
  assert float(ema_decay(tc, jnp.int32(0), 32)) == pytest.approx(0.1)
  assert float(ema_decay(tc, jnp.int32(10 ** 6), 32)) == pytest.approx(0.999)
  tc.ema_schedule = "stylegan"
  # After 100 steps of 32 images: ema_nimg = min(10000, 101 * 32 * 0.05) = 161.6 images.
  assert float(ema_decay(tc, jnp.int32(100), 32)) == pytest.approx(0.5 ** (32 / 161.6), rel=1e-6)
  assert float(ema_decay(tc, jnp.int32(10 ** 6), 32)) == pytest.approx(0.5 ** (32 / 10000), rel=1e-6)


def test_config_args_by_keyword():
  a = parse_arg("tiny,steps=20,eta=0.5", positional=("steps",), steps=50, eta=0.0, tiny=False)
  assert (a.tiny, a.steps, a.eta) == (True, 20, 0.5)
  assert parse_arg("10", positional=("steps",), steps=50).steps == 10
  assert parse_arg(None, tiny=False).tiny is False
  with pytest.raises(ConfigError, match=r"unknown name 'res'; known: \['tiny'\]"):
    parse_arg("tiny,res=16", tiny=False)
  with pytest.raises(ConfigError, match=r"steps='x' is not a int"):
    parse_arg("steps=x", steps=50)
  c = load_config_file(str(REPO / "configs/diffusion/ddim_cifar10.py") + ":20,eta=1.0")
  assert (c.sample.steps, c.sample.eta) == (20, 1.0)
  assert load_config_file(str(REPO / "configs/diffusion/shapes.py") + ":tiny").train.num_steps == 10


def test_trainstate_keeps_raw_keys_and_empty_frozen():
  s = TrainState.create(params={}, opt_state=(), rng=jax.random.key(0))
  assert s.frozen == {} and s.rng.dtype == jnp.uint32


def test_gpu_checks_script_runs_without_tensorflow(tmp_path):
  """launch/gpu_checks.sh on :tiny configs, with a `tensorflow` that cannot be imported on the path
  (GPU machines have JAX but no TensorFlow): the selected jaxgen row runs and the JSON is written. One
  row (the bf16 DDIM benchmark: a training step and the 50-step sampler) covers the script's path;
  every row is the same `--mode benchmark` launch with other flags."""
  stub = tmp_path / "stub" / "tensorflow"
  stub.mkdir(parents=True)
  (stub / "__init__.py").write_text("raise ImportError('no TensorFlow on this machine (test stand-in)')\n")
  env = _env() | {"PYTHONPATH": str(tmp_path / "stub"), "PEER": "/nonexistent",
                  "CFG": "configs/diffusion/ddpm_cifar10.py:tiny",
                  "DDIM_CFG": "configs/diffusion/ddim_cifar10.py:tiny", "BATCH": "8", "SAMPLE_BATCH": "8",
                  "ROWS": "ddim50_b256"}
  env.pop("JAXGEN_INCEPTION_WEIGHTS", None)
  proc = subprocess.run(["bash", str(REPO / "launch" / "gpu_checks.sh"), str(tmp_path / "out")], env=env,
                        capture_output=True, text=True, timeout=400)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  result = json.load(open(tmp_path / "out" / "gpu_checks.json"))
  assert isinstance(result["ddim50_b256"], dict), result["ddim50_b256"]
  for row in ("jax_fp32", "jax_bf16"):
    assert "failed" in result[row]   # skipped by ROWS: no benchmark.json
  row = result["ddim50_b256"]
  assert row["compute_dtype"] == "bfloat16" and row["sample_batch"] == 8 and row["sample_images_per_s"] > 0


@pytest.mark.parametrize("path", sorted(str(p.relative_to(REPO)) for p in (REPO / "configs").glob("*/*.py")))
def test_every_config_and_its_tiny_variant_validate(path):
  """Each shipped config (and :tiny) passes the config check that runs before compilation (datasets
  aside: those are checked where they exist, in the family tests)."""
  for arg in ("", ":tiny"):
    config_check.validate(load_config_file(str(REPO / path) + arg), benchmark=True)


def test_image_conditioning_comes_from_eval_rows(tmp_path):
  """A method conditioned on images (a toy super-resolution: cond_keys=("low_res",), no default) gets
  the eval split's rows in order, sharded like a batch, in sample mode and in the training grid,
  which shows (input, output) pairs."""
  from jaxgen import data
  cfg = toy_config(**{"data.degrade.kind": "bicubic", "data.degrade.factor": 2, "train.num_steps": 2,
                      "train.sample_every": 2, "train.num_samples": 4, "eval.batch_size": 4})
  main.run(cfg, str(tmp_path), "train")
  grid = images.make_pair_grid([np.zeros((4, 4, 4, 3))], np.zeros((4, 8, 8, 3)))
  from PIL import Image
  assert np.asarray(Image.open(tmp_path / "samples" / "step_00000002.png")).shape == grid.shape
  out = np.load(main.run(cfg, str(tmp_path), "sample", num_samples=6) + ".npz")
  rows = list(data.eval_iterator(cfg.data, global_batch_size=4, process_index=0, process_count=1))
  want = np.concatenate([b["low_res"] for b in rows])[:6]
  np.testing.assert_allclose(out["cond_low_res"], want, atol=1e-6)
  assert out["image"].shape == (6, 8, 8, 3)
  # The sampler saw those rows: each sample is nearest to the upsampled input of its own row.
  up = np.repeat(np.repeat(want, 2, 1), 2, 2)
  dist = ((out["image"][:, None].astype(np.float32) / 127.5 - 1 - up[None]) ** 2).mean((2, 3, 4))
  assert (dist.argmin(1) == np.arange(6)).mean() >= 0.8, dist
