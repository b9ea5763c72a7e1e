"""--mode eval wiring of the sample-based metrics: FID / KID / precision-recall computed by the
evaluator equal the same numbers computed independently through the metrics API, from the same
generated samples and the same real images."""
import json

import numpy as np

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
