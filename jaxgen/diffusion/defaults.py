"""The config sections of the diffusion family (model, optim, diffusion, sample), DDPM CIFAR-10 values.

Experiment configs under configs/diffusion/ start from `diffusion_base_config()` and override.
"""

import ml_collections

from jaxgen.configs import base_config
from jaxgen.pretrained import part_defaults as pretrained_part


def diffusion_base_config() -> ml_collections.ConfigDict:
  c = base_config()
  c.method = "ddpm"
  # Dropout and noise draws are a measurable part of a CPU/GPU step with threefry; rbg keys are fine
  # for them (see ../shared/bench/CPU_NOTES.md). Runs stay deterministic for a given key.
  c.prng_impl = "unsafe_rbg"

  c.model = ml_collections.ConfigDict()     # the U-Net (jaxgen/models/unet.py)
  c.model.ch = 128
  c.model.ch_mult = (1, 2, 2, 2)
  c.model.num_res_blocks = 2
  c.model.attn_resolutions = (16,)
  c.model.dropout = 0.1
  c.model.num_groups = 32
  c.model.dtype = "float32"                 # compute dtype: float32 | bfloat16

  c.optim = ml_collections.ConfigDict()
  c.optim.name = "adam"
  c.optim.lr = 2e-4
  c.optim.warmup_steps = 5000
  c.optim.grad_clip = 1.0
  c.optim.schedule = "constant"             # after the warm-up (jaxgen.optim): constant | cosine | linear
  c.optim.final_lr_frac = 0.0               # cosine / linear: the last step's lr as a fraction of lr

  c.diffusion = ml_collections.ConfigDict()
  c.diffusion.schedule = "linear"           # linear (DDPM) | cosine (improved DDPM)
  c.diffusion.timesteps = 1000
  c.diffusion.beta_start = 1e-4             # linear schedule only
  c.diffusion.beta_end = 0.02
  c.diffusion.objective = "eps"             # eps | x0 | v
  c.diffusion.min_snr_gamma = 0.0           # > 0: Min-SNR-gamma loss weights (Hang et al. 2023: 5); 0 = L_simple
  c.diffusion.var_type = "fixed_large"      # fixed_large (sigma^2 = beta_t) | fixed_small (beta-tilde_t)
  c.diffusion.class_conditional = False     # needs data.num_classes > 0
  c.diffusion.label_dropout = 0.0           # classifier-free guidance: P(label -> null label) in training

  c.sample = ml_collections.ConfigDict()
  c.sample.sampler = "ddpm"                 # ddpm (ancestral, all T steps) | ddim
  c.sample.steps = 50                       # ddim only
  c.sample.skip_type = "uniform"            # ddim only: uniform | quad
  c.sample.eta = 0.0                        # ddim only: 0 = deterministic, 1 = DDPM-like
  c.sample.progress = True                  # log a progress bar from loops of >= 100 steps
  c.sample.clip_denoised = True             # clip predicted x_0 to [-1, 1] (reference code does)
  c.sample.guidance_scale = 1.0             # classifier-free: 0 = uncond, 1 = cond, > 1 extrapolates
  c.sample.classifier_scale = 0.0           # classifier guidance: gradient scale s (0 = off) of ...
  # ... the noisy classifier run config.pretrained.classifier.workdir (jaxgen.pretrained; frozen).
  c.pretrained.classifier = pretrained_part()

  c.eval.vlb_timesteps = 0                  # bits/dim: 0 = all T terms; K >= 2: L_0 + estimate from K-1

  c.train.ema_decay = 0.9999
  return c


def make_tiny(c: ml_collections.ConfigDict) -> None:
  """A seconds-long smoke variant of any diffusion config (in place)."""
  c.data.num_train_examples = 256
  c.model.ch = 16
  c.model.ch_mult = (1, 2)
  c.model.num_res_blocks = 1
  c.model.attn_resolutions = (16,)
  c.model.num_groups = 8
  c.diffusion.timesteps = 20
  c.optim.warmup_steps = 5
  c.train.batch_size = 16
  c.train.num_steps = 10
  c.train.log_every = 5
  c.train.sample_every = 10
  c.train.num_samples = 8
  c.train.ckpt_every = 10
  c.train.ema_decay = 0.99
  c.eval.batch_size = 16
  c.eval.num_examples = 32
  c.eval.num_samples = 16
  c.eval.metrics = ()
  c.sample.steps = min(c.sample.steps, c.diffusion.timesteps)
  c.eval.vlb_timesteps = min(c.eval.vlb_timesteps, c.diffusion.timesteps)
