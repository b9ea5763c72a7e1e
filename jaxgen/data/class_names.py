"""Class names of the labelled datasets, in label order (no TensorFlow).

  cifar10        TFDS `cifar10` label order (= the official batches.meta.txt, and openai/CLIP's
                 data/prompts.md CIFAR10 classes): airplane, automobile, bird, cat, deer, dog, frog,
                 horse, ship, truck.
  mnist          "0" .. "9" (TFDS `mnist`; openai/CLIP's MNIST classes).
  fashion_mnist  TFDS `fashion_mnist` label names (Xiao et al. 2017, Table 1).
  shapes         the embedded shapes dataset: label = 2 * shape + colour (jaxgen.data.shapes), named
                 "<colour> <shape>", e.g. "red circle".

`for_dataset(data_cfg)` gives the names of the labels as they appear in batches: for source "tfds" or
"arrays" by data.name, for "folder" the class folder names (underscores as spaces), for "shapes" the
shapes' classes; with data.classes and data.remap_classes, the names of the kept classes in
data.classes order (label k of a batch is class data.classes[k]).
"""
import os

from jaxgen.data import shapes
from jaxgen.errors import ConfigError

__all__ = ["for_dataset", "NAMES"]

NAMES = {
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                "truck"),
    "mnist": tuple(str(d) for d in range(10)),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"),
    "shapes": tuple(f"{colour} {shape}" for shape in shapes.SHAPES for colour in shapes.COLOURS),
}


def _source_names(data_cfg) -> tuple[str, ...]:
  source = data_cfg.source
  if source == "shapes":
    return NAMES["shapes"]
  if source in ("tfds", "arrays"):
    name = (data_cfg.get("name") or "").split(":")[0].split("/")[0]
    if name in NAMES:
      return NAMES[name]
    raise ConfigError(f"No class names for data.source={source!r} data.name="
                      f"{data_cfg.get('name')!r}; names are known for data.name in {sorted(NAMES)} "
                      "(or use source='folder', whose class folder names are the class names).")
  if source == "folder":
    from jaxgen.data import sources  # pylint: disable=g-import-not-at-top  (TF-free; avoids a cycle)
    root = data_cfg.get("path") or ""
    if not root or not os.path.isdir(root):
      raise ConfigError(f"data.path={root!r} is not a folder; source='folder' expects "
                        "<path>/<split>/<class>/*.png|jpg|jpeg (class names = folder names).")
    classes, _, _ = sources._list_folder(os.path.abspath(root), data_cfg.train_split)  # pylint: disable=protected-access
    return tuple(c.replace("_", " ") for c in classes)
  raise ConfigError(f"data.source={source!r} has no class labels, so no class names; label "
                    "captions and zero-shot classification need a labelled source (tfds, folder, "
                    "arrays with data.name in " f"{sorted(NAMES)}, shapes).")


def for_dataset(data_cfg) -> list[str]:
  """The class names of data_cfg's labels, index = the label in batches (see the module doc)."""
  names = _source_names(data_cfg)
  classes = tuple(data_cfg.get("classes", ()))
  bad = [c for c in classes if not 0 <= c < len(names)]
  if bad:
    raise ConfigError(f"data.classes={classes}: {bad} not in [0, {len(names)}), the classes of "
                      f"the dataset ({names[:3]}...).")
  if classes and data_cfg.get("remap_classes", False):
    return [names[c] for c in classes]
  return list(names)
