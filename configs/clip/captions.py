r"""A tiny CLIP on the real image-caption folder ../shared/datasets/skimage_captions (8 scikit-image
photos with one hand-written caption each, source "captions").

  python -m jaxgen.main --config=configs/clip/captions.py --workdir=workdir/clip_captions \
      --config.data.path=../shared/datasets/skimage_captions
Smoke test: --config=configs/clip/captions.py:tiny

Eight pairs cannot teach general features: the run memorises them, and image <-> text retrieval
recall@1 over the same 8 pairs (the folder is every split) shows the pairing was learnt (chance
1/8). Same model and optimizer as configs/clip/shapes.py.
"""
import ml_collections

from jaxgen.configs import parse_arg
from jaxgen.methods import clip


def get_config(arg=None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, tiny=False, steps=200, path="../shared/datasets/skimage_captions")
  c = clip.base_config(dict(clip.TINY, context_length=128))
  c.data.source = "captions"
  c.data.path = args.path
  clip.make_cpu(c, steps=args.steps, batch=8)
  c.data.random_flip = False
  c.eval.batch_size = 8
  c.eval.evaluators = ("retrieval",)
  if args.tiny:
    clip.make_cpu(c, steps=10, batch=8)
  return c
