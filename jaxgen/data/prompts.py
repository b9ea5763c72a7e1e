"""CLIP's zero-shot prompt templates (Radford et al. 2021), verbatim from openai/CLIP.

Sources (openai/CLIP at commit d05afc436d78f1c48dc0dbf8e5980a9d471f35f6):
  "cifar10" (18 templates), "mnist" (1): data/prompts.md, sections "CIFAR10" and "MNIST";
  "imagenet" (80): notebooks/Prompt_Engineering_for_ImageNet.ipynb, `imagenet_templates`.
"{}" stands for a class name (jaxgen.data.class_names); a zero-shot classifier averages the
normalised text embeddings of all templates of a class. "simple" is the single template
"a photo of a {}." (the first CIFAR-10 template, the CLIP paper's baseline prompt).
"""
from jaxgen.errors import ConfigError

__all__ = ["templates", "TEMPLATES"]

CIFAR10 = (
    'a photo of a {}.',
    'a blurry photo of a {}.',
    'a black and white photo of a {}.',
    'a low contrast photo of a {}.',
    'a high contrast photo of a {}.',
    'a bad photo of a {}.',
    'a good photo of a {}.',
    'a photo of a small {}.',
    'a photo of a big {}.',
    'a photo of the {}.',
    'a blurry photo of the {}.',
    'a black and white photo of the {}.',
    'a low contrast photo of the {}.',
    'a high contrast photo of the {}.',
    'a bad photo of the {}.',
    'a good photo of the {}.',
    'a photo of the small {}.',
    'a photo of the big {}.',
)
MNIST = (
    'a photo of the number: "{}".',
)
IMAGENET = (
    'a bad photo of a {}.',
    'a photo of many {}.',
    'a sculpture of a {}.',
    'a photo of the hard to see {}.',
    'a low resolution photo of the {}.',
    'a rendering of a {}.',
    'graffiti of a {}.',
    'a bad photo of the {}.',
    'a cropped photo of the {}.',
    'a tattoo of a {}.',
    'the embroidered {}.',
    'a photo of a hard to see {}.',
    'a bright photo of a {}.',
    'a photo of a clean {}.',
    'a photo of a dirty {}.',
    'a dark photo of the {}.',
    'a drawing of a {}.',
    'a photo of my {}.',
    'the plastic {}.',
    'a photo of the cool {}.',
    'a close-up photo of a {}.',
    'a black and white photo of the {}.',
    'a painting of the {}.',
    'a painting of a {}.',
    'a pixelated photo of the {}.',
    'a sculpture of the {}.',
    'a bright photo of the {}.',
    'a cropped photo of a {}.',
    'a plastic {}.',
    'a photo of the dirty {}.',
    'a jpeg corrupted photo of a {}.',
    'a blurry photo of the {}.',
    'a photo of the {}.',
    'a good photo of the {}.',
    'a rendering of the {}.',
    'a {} in a video game.',
    'a photo of one {}.',
    'a doodle of a {}.',
    'a close-up photo of the {}.',
    'a photo of a {}.',
    'the origami {}.',
    'the {} in a video game.',
    'a sketch of a {}.',
    'a doodle of the {}.',
    'a origami {}.',
    'a low resolution photo of a {}.',
    'the toy {}.',
    'a rendition of the {}.',
    'a photo of the clean {}.',
    'a photo of a large {}.',
    'a rendition of a {}.',
    'a photo of a nice {}.',
    'a photo of a weird {}.',
    'a blurry photo of a {}.',
    'a cartoon {}.',
    'art of a {}.',
    'a sketch of the {}.',
    'a embroidered {}.',
    'a pixelated photo of a {}.',
    'itap of the {}.',
    'a jpeg corrupted photo of the {}.',
    'a good photo of a {}.',
    'a plushie {}.',
    'a photo of the nice {}.',
    'a photo of the small {}.',
    'a photo of the weird {}.',
    'the cartoon {}.',
    'art of the {}.',
    'a drawing of the {}.',
    'a photo of the large {}.',
    'a black and white photo of a {}.',
    'the plushie {}.',
    'a dark photo of a {}.',
    'itap of a {}.',
    'graffiti of the {}.',
    'a toy {}.',
    'itap of my {}.',
    'a photo of a cool {}.',
    'a photo of a small {}.',
    'a tattoo of the {}.',
)

TEMPLATES = {"cifar10": CIFAR10, "mnist": MNIST, "imagenet": IMAGENET, "simple": CIFAR10[:1]}
# Datasets that use another one's templates (Fashion-MNIST and the shapes dataset are photos of
# objects; CLIP's repository has no templates of their own).
_ALIASES = {"fashion_mnist": "cifar10", "shapes": "cifar10"}


def templates(name: str) -> list[str]:
  """The prompt templates of `name` ("cifar10", "mnist", "imagenet", "simple", or a dataset that
  borrows them: "fashion_mnist", "shapes"), each with one "{}"."""
  key = _ALIASES.get(name, name)
  if key not in TEMPLATES:
    raise ConfigError(f"No prompt templates named {name!r}; use one of "
                      f"{sorted(TEMPLATES) + sorted(_ALIASES)}.")
  return list(TEMPLATES[key])
