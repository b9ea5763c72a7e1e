"""Name -> method lookup used by configs (`config.method`). Entries are import paths, so asking for one
family never imports the others."""
import importlib

from jaxgen.errors import ConfigError
from jaxgen.methods.base import Method

METHODS: dict[str, str] = {
    "vae": "jaxgen.methods.vae:VAE",
    "gan": "jaxgen.methods.gan:GAN",
    "cyclegan": "jaxgen.methods.cyclegan:CycleGAN",
    "ddpm": "jaxgen.methods.diffusion:Diffusion",
    "noisy_classifier": "jaxgen.methods.diffusion:NoisyClassifier",
    "autoregressive": "jaxgen.methods.autoregressive:Autoregressive",
    "srgan": "jaxgen.methods.srgan:SRGAN",
    "simclr": "jaxgen.methods.simclr:SimCLR",
    "clip": "jaxgen.methods.clip:CLIP",
}


def get_method_class(name: str) -> type[Method]:
  """A registered name, or an import path "package.module:Class" for methods living outside jaxgen."""
  if ":" in name and name not in METHODS:
    module, cls = name.split(":")
    try:
      return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as e:
      raise ConfigError(f"config.method={name!r} cannot be imported ({e}).") from e
  if name not in METHODS:
    raise ConfigError(f"Unknown method config.method={name!r}. Known methods: {sorted(METHODS)}.")
  module, cls = METHODS[name].split(":")
  return getattr(importlib.import_module(module), cls)


def create_method(config) -> Method:
  return get_method_class(config.method)(config)
