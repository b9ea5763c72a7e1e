"""jaxgen: JAX/Flax image generative models. `pip install -e ".[test]"`."""
from setuptools import find_packages, setup

setup(
    name="jaxgen",
    version="0.1.0",
    description="JAX/Flax research codebase for image generative models",
    packages=find_packages(include=["jaxgen", "jaxgen.*"]),
    python_requires=">=3.10",
    # Ranges known to work together: JAX/Flax/Orbax API drift is the most common breakage of JAX
    # codebases, so the upper bounds are the releases this code was tested with (+ patch releases).
    # jax < 0.12 admits the 0.11 line that GPU machines ship (README: which versions ran where).
    install_requires=[
        "jax>=0.10.2,<0.12",
        "flax>=0.12.8,<0.13",
        "optax>=0.2.8,<0.3",
        "orbax-checkpoint>=0.12.8,<0.13",
        "tensorflow-cpu>=2.21,<2.22; platform_machine=='x86_64'",
        "tensorflow>=2.21,<2.22; platform_machine!='x86_64'",
        "tensorflow-datasets>=4.9.10,<4.10",
        "einops>=0.8",
        "ml_collections>=1.1,<2",
        "clu>=0.0.12",
        "importlib_resources",
        "pillow",
        "tensorboard",
        "numpy",
        "scipy",
        "absl-py",
        "ftfy>=6",     # CLIP tokenizer text cleaning (jaxgen.data.clip_tokenizer)
        "regex",       # CLIP tokenizer pattern (\p{L} classes)
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3"],   # the suite runs on 2 workers (README)
        # Accelerator builds of the same JAX range: pip install -e ".[cuda]" (CUDA 13 wheels; use
        # jax[cuda12] on older drivers) or ".[tpu]" on TPU VMs.
        "cuda": ["jax[cuda13]>=0.10.2,<0.12"],
        "tpu": ["jax[tpu]>=0.10.2,<0.12"],
    },
)
