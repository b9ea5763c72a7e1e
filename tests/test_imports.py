"""Accelerator machines may have JAX without TensorFlow: importing the models, methods, nn, diffusion,
metrics and benchmark, and running a whole benchmark, must never import TensorFlow."""
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]

CODE = """
import sys
import jaxgen.models.vae, jaxgen.models.dcgan, jaxgen.models.unet, jaxgen.models.noisy_classifier
import jaxgen.methods.vae, jaxgen.methods.gan, jaxgen.methods.diffusion
import jaxgen.models.clip, jaxgen.models.resnet, jaxgen.methods.clip, jaxgen.methods.simclr
import jaxgen.augment, jaxgen.metrics.probe, jaxgen.metrics.contrastive, jaxgen.weights.clip
import jaxgen.data.clip_tokenizer, jaxgen.data.class_names, jaxgen.data.prompts
import jaxgen.nn.blocks, jaxgen.nn.attention, jaxgen.nn.conv, jaxgen.nn.embeddings, jaxgen.nn.linear
import jaxgen.diffusion.samplers, jaxgen.metrics, jaxgen.benchmark, jaxgen.train, jaxgen.evaluate
assert 'tensorflow' not in sys.modules, 'importing jaxgen imported tensorflow'
from jaxgen import benchmark
from jaxgen.configs import load_config_file
cfg = load_config_file('configs/vae/mnist.py:tiny')
cfg.benchmark.steps = 1
cfg.benchmark.sample_batch = 2
res = benchmark.benchmark(cfg)
assert res['images_per_s'] > 0 and res['sample_images_per_s'] > 0
assert 'tensorflow' not in sys.modules, 'the benchmark imported tensorflow'
print('ok')
"""


def test_no_tensorflow_in_models_methods_metrics_benchmark():
  proc = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                        timeout=300, cwd=REPO)
  assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
