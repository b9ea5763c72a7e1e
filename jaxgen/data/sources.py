"""Data sources: a split of a dataset as random-access examples, read by integer index.

Each source gives an `Examples`: its size and `read(index) -> dict of numpy arrays` for a batch of
int64 indices [n]. Array-like sources return "image" uint8 [n, h, w, c] (one fixed size), or for
float arrays (e.g. cached latents) float16/float32 [n, h, w, c] with any c, which the pipeline passes
through unchanged; file sources return "path" (bytes [n]) and the pipeline decodes them in TF.
Optional "label" int32 [n] and "caption_tokens" int32 [n, caption_max_len]. Source "none" reads
nothing (no outputs at all). Only the "tfds" source imports TensorFlow (lazily), so validating the
other sources is TF-free and fast.

data.classes keeps only the examples of those classes (`get` re-indexes the split to them, so the
order, resume and process slicing work unchanged on the subset); data.num_train_examples then caps
the subset.
"""
import dataclasses
import functools
import json
import os
from typing import Callable, Optional

import numpy as np

from jaxgen.data import shapes
from jaxgen.data import text
from jaxgen.errors import ConfigError

SOURCES = ("shapes", "tfds", "folder", "captions", "arrays", "none")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
CAPTIONS_FILE = "captions.jsonl"
# Datasets `python -m jaxgen.data.prepare` can build offline from local files.
PREPARABLE = {"mnist": "the 4 MNIST idx .gz files", "fashion_mnist": "the 4 Fashion-MNIST idx .gz files",
              "cifar10": "cifar-10-binary.tar.gz"}

_REGISTERED: dict[str, tuple[np.ndarray, Optional[np.ndarray]]] = {}


@dataclasses.dataclass(frozen=True)
class Examples:
  """One split of a source. `read` is None when the split was only checked, not loaded.

  size: number of examples (indices are [0, size)); None when only known after loading (a TFDS
    split filtered by data.classes and only checked).
  spec: read's outputs, name -> (numpy dtype, shape after the batch dimension).
  num_classes: labels lie in [0, num_classes) (the classes the source defines); 0 = unlabelled.
  labels: () -> int32 [size], every example's label, for labelled sources where that is cheap without
    reading images (None for unlabelled sources and for TFDS splits that are only checked).
  """
  size: Optional[int]
  spec: dict[str, tuple[type, tuple[int, ...]]]
  num_classes: int
  read: Optional[Callable[[np.ndarray], dict[str, np.ndarray]]]
  labels: Optional[Callable[[], np.ndarray]] = None


FLOAT_DTYPES = (np.float16, np.float32)


def _checked_arrays(what: str, images, labels) -> tuple[np.ndarray, Optional[np.ndarray]]:
  images = np.asarray(images)
  is_float = images.dtype in FLOAT_DTYPES
  if images.ndim != 4 or not (is_float or (images.dtype == np.uint8 and images.shape[-1] in (1, 3, 4))):
    raise ConfigError(f"{what}: images must be uint8 [N, H, W, C] with C in 1/3/4, or float16/float32 "
                      f"[N, H, W, C] with any C, got {images.dtype} {images.shape}.")
  if labels is not None:
    labels = np.asarray(labels)
    if labels.shape != images.shape[:1] or not np.issubdtype(labels.dtype, np.integer):
      raise ConfigError(f"{what}: labels must be int [{len(images)}], got {labels.dtype} "
                        f"{labels.shape}.")
    labels = labels.astype(np.int32)
  return images, labels


def register_arrays(name: str, images: np.ndarray, labels: Optional[np.ndarray] = None) -> None:
  """Makes in-memory arrays available as source="arrays", data.name=name.

  images: uint8 [N, H, W, C], C in {1, 3, 4} (scaled to [-1, 1], resized, converted to data.channels),
    or float16/float32 [N, H, W, C] with any C, e.g. cached latents (passed through unchanged, as
    float32: needs data.image_size == H == W and data.channels == C);
  labels: int [N] in [0, num_classes) or None.
  """
  _REGISTERED[name] = _checked_arrays(f"register_arrays({name!r})", images, labels)


def get(data_cfg, split: str, load: bool) -> Optional[Examples]:
  """The split's examples (ConfigError if they cannot be read). load=False only checks: nothing
  is decoded or loaded into memory, and `read` is None. Returns None only for a TFDS dataset that is
  not prepared yet while data.download is True (it is prepared when loading)."""
  source = data_cfg.source
  if source not in SOURCES:
    raise ConfigError(f"Unknown data.source={source!r}; use one of {SOURCES}.")
  ex = globals()[f"_{source}"](data_cfg, split, load)
  if ex is not None:
    ex = _select_classes(ex, data_cfg, split)
    if data_cfg.get("label_captions"):
      ex = _label_captions(ex, data_cfg)
  cap = data_cfg.get("num_train_examples", -1)
  if ex is not None and ex.size is not None and split == data_cfg.train_split and 0 < cap < ex.size:
    ex = dataclasses.replace(ex, size=cap)  # Indices [0, cap) = the first `cap` examples.
  if ex is not None and ex.size == 0 and source != "none":
    raise ConfigError(f"data.source={source!r} split {split!r} has no examples.")
  return ex


def _select_classes(ex: Examples, data_cfg, split: str) -> Examples:
  """The examples of classes data.classes (in their original order); labels become each class's
  position in data.classes iff data.remap_classes. Size None if the labels are not known yet (a TFDS
  split only checked)."""
  classes = tuple(data_cfg.get("classes", ()))
  if not classes:
    return ex
  if not ex.num_classes:
    raise ConfigError(f"data.classes={classes} but data.source={data_cfg.source!r} has no labels; "
                      "set data.classes=() (all examples).")
  bad = [c for c in classes if not 0 <= c < ex.num_classes]
  if bad:
    raise ConfigError(f"data.classes={classes}: {bad} not in [0, {ex.num_classes}), the classes of "
                      f"data.source={data_cfg.source!r}; use labels in that range.")
  num_classes = len(classes) if data_cfg.get("remap_classes", False) else ex.num_classes
  if ex.labels is None:
    return dataclasses.replace(ex, size=None, num_classes=num_classes)
  keep = np.flatnonzero(np.isin(ex.labels(), classes))
  if not keep.size:
    raise ConfigError(f"data.classes={classes}: split {split!r} has no examples of these classes.")
  new_label = np.arange(ex.num_classes, dtype=np.int32)
  if data_cfg.get("remap_classes", False):
    new_label[list(classes)] = np.arange(len(classes))
  read = ex.read

  def read_subset(index):
    out = read(keep[index])
    out["label"] = new_label[out["label"]]
    return out

  return Examples(len(keep), ex.spec, num_classes, read_subset if read is not None else None,
                  lambda: new_label[ex.labels()[keep]])


def _label_captions(ex: Examples, data_cfg) -> Examples:
  """"caption_tokens" made from each example's label: data.label_captions with "{}" replaced by
  the class name (jaxgen.data.class_names), tokenized once per class (not per step)."""
  from jaxgen.data import class_names  # pylint: disable=g-import-not-at-top
  if not ex.num_classes or "label" not in ex.spec:
    raise ConfigError(f"data.label_captions={data_cfg.label_captions!r} needs labels, but data.source="
                      f"{data_cfg.source!r} has none; set data.label_captions='' (off).")
  names = class_names.for_dataset(data_cfg)
  if len(names) < ex.num_classes:
    raise ConfigError(f"data.label_captions: {len(names)} class names for the {ex.num_classes} "
                      f"classes of data.source={data_cfg.source!r}.")
  table = text.tokenize_captions(data_cfg, [data_cfg.label_captions.format(n) for n in names])
  spec = dict(ex.spec, caption_tokens=(np.int32, (data_cfg.caption_max_len,)))
  read = ex.read

  def read_with_captions(index):
    out = read(index)
    out["caption_tokens"] = table[out["label"]]
    return out

  return dataclasses.replace(ex, spec=spec,
                             read=read_with_captions if read is not None else None)


def _array_examples(images: np.ndarray, labels: Optional[np.ndarray], num_classes: int,
                    load: bool) -> Examples:
  spec = {"image": (images.dtype.type, images.shape[1:])}
  if labels is not None:
    spec["label"] = (np.int32, ())

  def read(index):
    out = {"image": images[index]}
    if labels is not None:
      out["label"] = labels[index]
    return out
  return Examples(len(images), spec, num_classes, read if load else None,
                  None if labels is None else lambda: labels)


def _shapes(data_cfg, split: str, load: bool) -> Examples:
  if split not in shapes.SPLIT_SIZES:
    raise ConfigError(f"data.source='shapes' has splits {list(shapes.SPLIT_SIZES)}, not {split!r}; "
                      "set data.train_split / data.eval_split accordingly.")
  size, max_len = data_cfg.image_size, data_cfg.caption_max_len
  spec = {"image": (np.uint8, (size, size, 3)), "label": (np.int32, ()),
          "caption_tokens": (np.int32, (max_len,))}
  read = functools.partial(shapes.draw, split=split, size=size, caption_max_len=max_len,
                           tokenizer=text.tokenizer_name(data_cfg))
  # Training on more than SPLIT_SIZES["train"] examples is allowed via num_train_examples.
  n = shapes.SPLIT_SIZES[split]
  if split == data_cfg.train_split and data_cfg.get("num_train_examples", -1) > 0:
    n = data_cfg.num_train_examples
  labels = lambda: shapes.params(np.arange(n), split)["label"]
  return Examples(n, spec, shapes.NUM_CLASSES, read if load else None, labels)


def _none(data_cfg, split: str, load: bool) -> Examples:
  """No data (e.g. style transfer, which optimises pixels): nothing is read. Training batches are
  stream positions only; every split has data.num_eval_examples rows (the length of an eval pass)."""
  del split
  return Examples(data_cfg.get("num_eval_examples", 0), {}, 0, (lambda index: {}) if load else None)


def _arrays(data_cfg, split: str, load: bool) -> Examples:
  del split  # Registered arrays and .npz files are one set, used for every split.
  if data_cfg.get("path"):
    path = data_cfg.path
    if not os.path.isfile(path):
      raise ConfigError(f"data.path={path!r} (source='arrays') is not a file; give a .npz with "
                        "'image' uint8 or float [N,H,W,C] and optional 'label' int [N].")
    with np.load(path) as f:
      if "image" not in f:
        raise ConfigError(f"data.path={path!r} has arrays {list(f.keys())} but no 'image'.")
      images, labels = _checked_arrays(path, f["image"], f["label"] if "label" in f else None)
  else:
    if data_cfg.name not in _REGISTERED:
      raise ConfigError(f"data.name={data_cfg.name!r} is not registered (source='arrays'); call "
                        f"jaxgen.data.register_arrays first (registered: {sorted(_REGISTERED)}) or set "
                        "data.path to an .npz.")
    images, labels = _REGISTERED[data_cfg.name]
  num_classes = 0 if labels is None else int(labels.max()) + 1
  return _array_examples(images, labels, num_classes, load)


@functools.lru_cache(maxsize=8)
def _list_folder(root: str, split: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...]]:
  """(class names, file paths, labels) of root/<split>/<class>/*.{png,jpg,jpeg}, sorted. Class names
  are the sorted union over all splits' class folders, so a label means the same class in every split."""
  classes = sorted({c for s in os.listdir(root) if os.path.isdir(os.path.join(root, s))
                    for c in os.listdir(os.path.join(root, s))
                    if os.path.isdir(os.path.join(root, s, c))})
  paths, labels = [], []
  for label, c in enumerate(classes):
    d = os.path.join(root, split, c)
    if os.path.isdir(d):
      names = sorted(n for n in os.listdir(d) if n.lower().endswith(IMAGE_EXTENSIONS))
      paths += [os.path.join(d, n) for n in names]
      labels += [label] * len(names)
  return tuple(classes), tuple(paths), tuple(labels)


def _file_examples(paths, labels, tokens, num_classes: int, load: bool) -> Examples:
  paths = np.array([p.encode() for p in paths], dtype=object)
  spec = {"path": (object, ())}
  if labels is not None:
    labels = np.asarray(labels, np.int32)
    spec["label"] = (np.int32, ())
  if tokens is not None:
    spec["caption_tokens"] = (np.int32, tokens.shape[1:])

  def read(index):
    out = {"path": paths[index]}
    if labels is not None:
      out["label"] = labels[index]
    if tokens is not None:
      out["caption_tokens"] = tokens[index]
    return out
  return Examples(len(paths), spec, num_classes, read if load else None,
                  None if labels is None else lambda: labels)


def _folder(data_cfg, split: str, load: bool) -> Examples:
  root = data_cfg.path
  if not root or not os.path.isdir(os.path.join(root, split)):
    raise ConfigError(f"data.path={root!r} has no split folder {split!r}; source='folder' expects "
                      "<path>/<split>/<class>/*.png|jpg|jpeg.")
  classes, paths, labels = _list_folder(os.path.abspath(root), split)
  if not paths:
    raise ConfigError(f"No .png/.jpg/.jpeg images under {os.path.join(root, split)}/<class>/.")
  return _file_examples(paths, labels, None, len(classes), load)


def _captions(data_cfg, split: str, load: bool) -> Examples:
  del split  # A captions folder is one set of examples, used for every split.
  root = data_cfg.path
  file = os.path.join(root, CAPTIONS_FILE)
  if not root or not os.path.isfile(file):
    raise ConfigError(f"data.path={root!r} (source='captions') must be a folder holding the images and "
                      f"{CAPTIONS_FILE} (one JSON object per line with 'file_name' and 'caption').")
  with open(file, encoding="utf-8") as f:
    rows = [json.loads(line) for line in f if line.strip()]
  paths = [os.path.join(root, r["file_name"]) for r in rows]
  missing = [p for p in paths if not os.path.isfile(p)]
  if missing:
    raise ConfigError(f"{file} names {len(missing)} missing image(s), e.g. {missing[0]!r}.")
  tokens = text.tokenize_captions(data_cfg, [r["caption"] for r in rows])
  return _file_examples(paths, None, tokens, 0, load)


def prepare_command(name: str, data_dir: str) -> str:
  """How to build TFDS dataset `name` in `data_dir` without a network, as a message."""
  dd = data_dir or "~/tensorflow_datasets"
  if name in PREPARABLE:
    return (f"prepare it offline with `python -m jaxgen.data.prepare {name} --manual_dir DIR "
            f"--data_dir {dd}` (DIR holding {PREPARABLE[name]}), or set data.download=True on a "
            "machine with internet")
  return (f"build it with `tfds build {name} --data_dir {dd}` (with --manual_dir for manually "
          "downloaded files), or set data.download=True on a machine with internet")


def _tfds_builder(data_cfg):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  name = data_cfg.name
  if not name:
    raise ConfigError("data.source='tfds' needs data.name (a TFDS name such as 'mnist').")
  try:
    return tfds.builder(name, data_dir=data_cfg.data_dir or None)
  except tfds.core.registered.DatasetNotFoundError:
    raise ConfigError(f"Unknown TFDS dataset data.name={name!r}; see "
                      "https://www.tensorflow.org/datasets/catalog for names.") from None


@functools.lru_cache(maxsize=4)
def _tfds_arrays(name: str, data_dir: str, split: str) -> dict[str, np.ndarray]:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(name, data_dir=data_dir or None)
  return tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1, shuffle_files=False))


def _tfds(data_cfg, split: str, load: bool) -> Optional[Examples]:
  """A TFDS split, loaded whole into memory as numpy on first use (cached per process).

  Trade-off: in-memory arrays make random access by index trivial and fast (MNIST 47 MB, CIFAR-10
  150 MB) and work with every TFDS file format, but do not scale to ImageNet-size datasets; those
  want `tfds.data_source` over array_record files (or source="folder").
  """
  builder = _tfds_builder(data_cfg)
  name, data_dir = data_cfg.name, data_cfg.data_dir
  if not builder.is_prepared():
    if not data_cfg.download:
      raise ConfigError(f"TFDS dataset {name!r} is not prepared in data.data_dir={data_dir!r} and "
                        f"data.download=False: {prepare_command(name, data_dir)}.")
    if not load:
      return None
    builder.download_and_prepare()
  try:
    size = builder.info.splits[split].num_examples
  except (KeyError, ValueError):
    raise ConfigError(f"TFDS dataset {name!r} has no split {split!r}; splits: "
                      f"{list(builder.info.splits)}.") from None
  features = builder.info.features
  image = features["image"] if "image" in features else None
  if image is None or None in image.shape:
    raise ConfigError(f"TFDS dataset {name!r} has no fixed-size 'image' feature; source='tfds' "
                      "supports datasets like mnist / cifar10 (use source='folder' otherwise).")
  num_classes = features["label"].num_classes if "label" in features else 0
  spec = {"image": (np.uint8, tuple(image.shape))}
  if num_classes:
    spec["label"] = (np.int32, ())
  if not load:
    return Examples(size, spec, num_classes, None)
  arrays = _tfds_arrays(name, data_dir, split)
  labels = arrays["label"].astype(np.int32) if num_classes else None
  return _array_examples(arrays["image"], labels, num_classes, load=True)
