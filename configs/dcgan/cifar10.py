"""DCGAN on CIFAR-10 (Radford et al. 2016 architecture and hyper-parameters), 32x32 RGB.

Data: the CIFAR-10 JPEG folder. Unpack it once, next to the repository:
  mkdir -p ../data && tar xzf ../shared/datasets/cifar10-jpeg.tar.gz -C ../data
which gives ../data/cifar10/{train,test}/<class>/NNNN.jpg; data.path is that `cifar10/` root
(override with --config.data.path=/abs/path/to/cifar10).

Run:
  python -m jaxgen.main --config=configs/dcgan/cifar10.py --workdir=/tmp/dcgan_cifar10 --mode=train
Smoke test (seconds on a CPU):
  python -m jaxgen.main --config=configs/dcgan/cifar10.py:tiny --workdir=/tmp/dcgan_tiny --mode=train

Targets: the DCGAN paper reports no CIFAR-10 generation score (it uses CIFAR-10 only to
evaluate D's features, 82.8% accuracy). Later work measures this architecture family at FID in the
30s to 40s on CIFAR-10; these JPEG images are lossy, so FID against their statistics is close to,
not equal to, numbers computed on the official binaries.

Speed (2-core CPU, batch 128, fp32), one command:
  python -m jaxgen.main --config=configs/dcgan/cifar10.py --mode=benchmark \
      --config.benchmark.steps=10 --config.benchmark.warmup_steps=3; \
  python ../shared/bench/peer_torch_dcgan.py --size 32 --channels 3 --features 128 --z_dim 100 \
      --batch 128 --steps 10 --warmup 3 --device cpu
gives, on a 2-core AMD EPYC with AVX2 only, 1.51-1.76 s per step vs the peer's 1.77-2.05 s in six
pairs (ratios 1.14-1.33x, median 1.20x), and on a 2-core AVX-512 EPYC (where the peer's oneDNN has
AVX-512 kernels), 1.20-1.34 s vs 1.20-1.32 s in eight pairs on a host whose timings drift by up to
10% between runs (ratios 0.92-1.05x, median 1.00x). There it was 0.93-0.98x before the
weight gradients became `jaxgen.nn.conv._kernel_grad` forward convolutions on batch-minor operands
(per-phase for the transposed convolutions) and 0.84x before D's layers took the sub-pixel input
gradient of jaxgen.nn.conv.conv_4x4_s2. The step is convolution-bound: on the AVX-512 host the
convolutions of the 4x4- and 8x8-pixel layers run 10-20% slower on XLA:CPU (Eigen) than on the
peer's oneDNN, about the share of taps that fall on padding (23% at 4x4, 12% at 8x8), which
Eigen's patch GEMM multiplies and oneDNN's direct kernels skip; the rest (~200 ms) is BatchNorm,
activations and operand copies.
"""
import os

import ml_collections

from jaxgen.configs import load_config_file, parse_arg


def get_config(arg=None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, tiny=False)
  # The MNIST config's architecture, optimizers and tiny variant, on 32x32 RGB CIFAR-10 images.
  mnist = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mnist.py")
  c = load_config_file(f"{mnist}:{arg}" if arg else mnist)
  c.data.source = "folder"
  c.data.name = ""
  c.data.path = "../data/cifar10"
  c.data.channels = 3
  c.data.crop = "center"
  c.data.random_flip = True
  if not args.tiny:
    c.train.num_steps = 100_000
    c.train.sample_every = 5000
    c.train.ckpt_every = 5000
    # FID and KID on 50k samples (eval.fid_num_samples) against the training set. Add "is" when the
    # Inception weights with the 1008-way classifier are given (python -m jaxgen.metrics convert).
    c.eval.metrics = ("fid", "kid")
  return c
