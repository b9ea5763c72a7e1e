"""jaxgen.diffusion: the Gaussian diffusion process (schedules, forward process, posterior, objectives,
variational bound), DDPM / DDIM samplers and guidance. Pure JAX; no TensorFlow.

  process.py   Process (schedule arrays, q(x_t | x_0), q(x_{t-1} | x_t, x_0), eps / x0 / v conversions,
               L_t terms in bits/dim)
  samplers.py  ddpm_step / ddpm_sample, ddim_timesteps / ddim_sample / ddim_encode (lax.scan)
  guidance.py  classifier-free guidance, classifier gradients
  defaults.py  the config sections of the diffusion family; make_tiny
"""
