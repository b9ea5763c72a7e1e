r"""CLIP RN50 (Radford et al. 2021): OpenAI's modified ResNet-50 image tower (3-conv stem,
anti-aliased strides, attention pooling) with the 12-layer text Transformer, the exact released
architecture (102,007,137 parameters, equal to open_clip's RN50).

  python -m jaxgen.main --config=configs/clip/rn50.py --workdir=workdir/clip_rn50 \
      --config.data.path=/data/my_captions
  python -m jaxgen.main --config=configs/clip/rn50.py --mode=benchmark
Smoke test (seconds): --config=configs/clip/rn50.py:tiny (a [1, 1, 1, 1]-block ResNet tower of
width 16 on the shapes captions).

Paper hyper-parameters (Tables 18 and 19): batch 32,768, 32 epochs, AdamW b1 0.9, b2 0.999,
eps 1e-8 (ResNets), weight decay 0.2 (not on gains / biases), lr 5e-4, 2000 warm-up iterations then
cosine, temperature 0.07 initially, logit scale clipped at 100, 224 x 224 images, context 77.
Targets (zero-shot, Table 11): ImageNet 59.6 %, CIFAR-10 75.6 %.
"""
import ml_collections

from jaxgen.configs import parse_arg
from jaxgen.methods import clip
from jaxgen.models import clip as models

TINY_RESNET = dict(clip.TINY, vision_layers=(1, 1, 1, 1), vision_width=16, vision_heads=2)


def get_config(arg=None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, tiny=False, batch=32768)
  if args.tiny:
    c = clip.base_config(TINY_RESNET)
    clip.make_cpu(c, steps=20, batch=16)
    return c
  return clip.paper_config(models.RN50, b2=0.999, eps=1e-8, batch=args.batch)
