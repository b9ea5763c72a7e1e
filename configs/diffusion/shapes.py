r"""DDPM with classifier-free guidance on the embedded shapes dataset: jaxgen's default main job.

Needs no files and no network, so it runs on any fresh machine (the README's first command):
  python -m jaxgen.main --config=configs/diffusion/shapes.py --workdir=workdir/shapes
  python -m jaxgen.main --config=configs/diffusion/shapes.py --workdir=workdir/shapes --mode=sample
Smoke test (seconds): --config=configs/diffusion/shapes.py:tiny

Class-conditional (10 classes = shape x colour, see jaxgen/data/shapes.py) eps-prediction DDPM at
32x32 with a small U-Net, 10 % label dropout for classifier-free guidance, Min-SNR-5 loss weights,
cosine lr decay and a warmed-up EMA, sampled with 50-step stochastic DDIM (eta 1) at guidance scale 5.
No paper number: the target is that each sample shows its label's shape and colour, judged by a CNN
trained on real shapes (`--mode eval` runs the shapes_agreement evaluator and FID against the test
split). Measured at step 2000 by `--mode eval` (1000 judged samples): shape agreement 0.90, colour
1.00; FID 139.7 (1000 samples vs 1000 test images; biased at this size). The earlier sampler
(deterministic DDIM at guidance 3) gave shape 0.801, colour 0.999, FID 147.5 on a run of the same
config. With 200 judged samples: guidance 2 -> shape 0.69, 5 -> 0.835, 7 -> 0.855, 10 -> 0.85; at 5
with eta 1 -> 0.87, 100 steps -> 0.845, both -> 0.865: the sampler saturates near 0.86-0.90, so the
model, not the guidance, limits the shape agreement. Older settings (1200 steps of constant lr / EMA
0.995 / no Min-SNR) gave 0.18 / 0.72 at step 800. 2000 training steps of 0.39-0.58 s on a 2-core CPU
(13-19 min; `--mode=benchmark` gives the step time) plus the periodic sample grids.
"""
import ml_collections

from jaxgen.configs import parse_arg
from jaxgen.diffusion.defaults import diffusion_base_config, make_tiny


def get_config(arg=None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, tiny=False)
  c = diffusion_base_config()
  c.data.source = "shapes"
  c.data.image_size = 32
  c.data.channels = 3
  c.data.num_classes = 10

  c.model.ch = 32
  c.model.ch_mult = (1, 2, 2)
  c.model.num_res_blocks = 1
  c.model.attn_resolutions = (8,)
  c.model.dropout = 0.0
  c.model.num_groups = 8

  c.diffusion.class_conditional = True
  c.diffusion.label_dropout = 0.1
  # Min-SNR-5 weights (Hang et al. 2023): the nearly clean steps, which eps-prediction weights by up to
  # ~1e4 in x0 terms, stop dominating, and the shape (decided at high noise) is learnt sooner.
  c.diffusion.min_snr_gamma = 5.0

  c.optim.lr = 1e-3
  c.optim.warmup_steps = 100
  c.optim.schedule = "cosine"         # to 0.1 x lr: the last few hundred steps sharpen the outlines
  c.optim.final_lr_frac = 0.1

  c.train.batch_size = 32
  c.train.num_steps = 2000
  c.train.log_every = 50
  c.train.sample_every = 500
  c.train.num_samples = 50
  c.train.ckpt_every = 500
  # EMA with warm-up, min(0.999, (1 + n) / (10 + n)): a constant 0.995 still holds 13 % of the random
  # init at step 400 (its samples were pure noise there while the raw params' were not).
  c.train.ema_decay = 0.999
  c.train.ema_schedule = "warmup"

  c.sample.sampler = "ddim"
  c.sample.steps = 50
  c.sample.eta = 1.0                  # stochastic DDIM: shape agreement 0.90 vs 0.80 at eta 0
  c.sample.guidance_scale = 5.0

  c.eval.batch_size = 100
  c.eval.num_examples = 1000
  c.eval.num_samples = 100
  c.eval.vlb_timesteps = 20
  # How often samples show the requested shape and colour (jaxgen/data/shapes_judge.py), and FID
  # against the test split (a small reference: 1000 images each side, Inception runs ~25 img/s here).
  c.eval.evaluators = ("shapes_agreement",)
  c.eval.judge_num_samples = 1000
  c.eval.judge_steps = 800
  c.eval.metrics = ("fid",)
  c.eval.fid_num_samples = 1000
  c.eval.reference_split = "test"
  c.eval.reference_num_examples = 1000
  if args.tiny:
    make_tiny(c)
    c.eval.judge_num_samples = 16   # a smoke test of the wiring: the judge trains in seconds
    c.eval.judge_steps = 10
  return c
