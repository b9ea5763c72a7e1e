r"""A CPU-sized CLIP on MNIST (grey digits as RGB, 32 x 32) with captions made from the class names
('a photo of the number: "7".', CLIP's MNIST prompt), evaluated by zero-shot classification.

  python -m jaxgen.main --config=configs/clip/mnist.py --workdir=workdir/clip_mnist
Smoke test: --config=configs/clip/mnist.py:tiny

Chance is 10 %. (OpenAI's released CLIP models are weak on MNIST zero-shot, Table 11; this run is
trained on MNIST itself, so it is the learning check of the text-image pairing, not that number.)
"""
import ml_collections

from jaxgen.configs import parse_arg
from jaxgen.methods import clip


def get_config(arg=None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, tiny=False, steps=1000)
  c = clip.base_config(clip.TINY)
  c.data.source = "tfds"
  c.data.name = "mnist"
  c.data.num_classes = 10
  c.data.label_captions = 'a photo of the number: "{}".'
  clip.make_cpu(c, steps=args.steps, batch=64)
  c.eval.evaluators = ("zero_shot",)
  c.eval.zero_shot_templates = "mnist"
  if args.tiny:
    clip.make_cpu(c, steps=20, batch=16)
  return c
