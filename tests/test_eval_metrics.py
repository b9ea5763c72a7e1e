"""--mode eval wiring of the sample-based metrics: FID / KID / precision-recall computed by the
evaluator equal the same numbers computed independently through the metrics API, from the same
generated samples and the same real images."""
import json

import numpy as np
import pytest

from jaxgen import data, evaluate, main, metrics, sampling
from toy_method import toy_config

N = 40


def test_eval_mode_sample_metrics_equal_independent_computation(tmp_path):
  cfg = toy_config(**{"eval.metrics": ("fid", "kid", "pr"), "eval.fid_num_samples": N,
                      "eval.reference_num_examples": N, "eval.reference_split": "train",
                      "eval.num_samples": 0, "train.sample_every": 0, "train.num_steps": 4})
  wd = str(tmp_path)
  main.run(cfg, wd, "train")
  res = main.run(cfg, wd, "eval")
  saved = json.load(open(tmp_path / "eval" / "metrics.json"))
  assert saved["fid"] == res["fid"] and saved["step"] == 4
  assert json.loads(open(tmp_path / "eval" / "metrics.jsonl").readline())["fid"] == res["fid"]
  assert list((tmp_path / "eval").glob("events.out.tfevents.*"))

  # Independently: the evaluator's samples (same seed) and the first N real training images.
  from jaxgen import config_check, parallel, train
  method = config_check.validate(cfg)
  mesh = parallel.create_mesh(cfg.mesh)
  state, _, ckpt = train.restore_or_init(method, cfg, mesh, wd, require_checkpoint=True)
  ckpt.close()
  fake = metrics.to_uint8(sampling.generate(method, cfg, state, mesh, N, cfg.eval.batch_size,
                                            evaluate.sample_key(cfg))[0])
  real = np.concatenate([b["image"][b["mask"] > 0] for b in data.eval_iterator(
      cfg.data, global_batch_size=8, split="train", num_examples=N, process_index=0, process_count=1)])
  assert len(fake) == len(real) == N
  ext = metrics.InceptionExtractor(batch_size=8)
  f_fake = ext(fake)["pool3"].astype(np.float64)
  f_real = ext(metrics.to_uint8(real))["pool3"].astype(np.float64)
  fid = metrics.frechet_distance(f_fake.mean(0), np.cov(f_fake, rowvar=False),
                                 f_real.mean(0), np.cov(f_real, rowvar=False))
  precision, recall = metrics.precision_recall(f_real, f_fake, k=3)
  print(f"eval-mode metrics on {N} toy samples: {res}")
  np.testing.assert_allclose(res["fid"], fid, rtol=1e-3)
  np.testing.assert_allclose([res["precision"], res["recall"]], [precision, recall], atol=1e-6)
  assert res["fid"] > 1.0 and np.isfinite(res["kid_mean"]) and res["kid_subset_size"] == N


def test_sample_metrics_resume_after_preemption(tmp_path, monkeypatch):
  """A sample-metrics pass killed after 3 of 5 batches resumes from its saved progress: it draws only
  the remaining 2 batches and gives the same FID as an uninterrupted pass."""
  cfg = toy_config(**{"eval.metrics": ("fid", "kid"), "eval.fid_num_samples": N,
                      "eval.reference_num_examples": N, "eval.reference_split": "train",
                      "eval.num_samples": 0, "train.sample_every": 0, "train.num_steps": 2,
                      "eval.save_every_samples": 8})
  wd = str(tmp_path)
  main.run(cfg, wd, "train")
  from jaxgen import config_check, parallel, train
  method = config_check.validate(cfg)
  mesh = parallel.create_mesh(cfg.mesh)
  state, _, ckpt = train.restore_or_init(method, cfg, mesh, wd, require_checkpoint=True)
  ckpt.close()
  full = evaluate.sample_metrics(method, cfg, state, mesh)   # no workdir: nothing saved

  calls = []
  real_update = metrics.Scorer.update

  def update_then_die(self, batch):
    calls.append(len(batch))
    if len(calls) == 4:
      raise KeyboardInterrupt("preempted")
    real_update(self, batch)

  monkeypatch.setattr(metrics.Scorer, "update", update_then_die)
  with pytest.raises(KeyboardInterrupt):
    evaluate.sample_metrics(method, cfg, state, mesh, wd)
  saved = list((tmp_path / "eval").glob("progress_*.npz"))
  assert len(saved) == 1 and int(np.load(saved[0])["next_batch"]) == 3
  calls.clear()
  monkeypatch.setattr(metrics.Scorer, "update", lambda self, b: (calls.append(len(b)), real_update(self, b)))
  resumed = evaluate.sample_metrics(method, cfg, state, mesh, wd)
  assert calls == [8, 8]                       # batches 3 and 4 only (40 samples, batch 8)
  np.testing.assert_allclose(resumed["fid"], full["fid"], rtol=1e-6)
  np.testing.assert_allclose(resumed["kid_mean"], full["kid_mean"], rtol=1e-6)
  assert not list((tmp_path / "eval").glob("progress_*.npz"))   # removed once done
