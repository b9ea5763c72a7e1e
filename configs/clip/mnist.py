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
  return clip.label_caption_config('mnist', 'a photo of the number: "{}".', "mnist", args.steps, args.tiny)
