r"""A CPU-sized CLIP on CIFAR-10 with captions made from the class names ("a photo of a cat."),
evaluated by zero-shot classification of the test split with CLIP's 18 CIFAR-10 prompt templates.

  python -m jaxgen.main --config=configs/clip/cifar10.py --workdir=workdir/clip_cifar10
Smoke test: --config=configs/clip/cifar10.py:tiny

Captions with one template teach ten text embeddings only, so this is close to a classifier whose
class weights come from the text tower; zero-shot accuracy with the other templates shows how far
the text tower generalises across prompts. For reference, OpenAI's ViT-B/32 reaches 91.3 % zero-shot
on CIFAR-10 after WIT pre-training (Table 11); chance is 10 %.
"""
import ml_collections

from jaxgen.configs import parse_arg
from jaxgen.methods import clip


def get_config(arg=None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, tiny=False, steps=2000)
  return clip.label_caption_config('cifar10', "a photo of a {}.", "cifar10", args.steps, args.tiny)
