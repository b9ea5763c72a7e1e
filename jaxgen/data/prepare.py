"""Builds TFDS's official datasets offline from local copies of their source files.

  python -m jaxgen.data.prepare mnist --manual_dir ../shared/datasets/mnist --data_dir DIR
  python -m jaxgen.data.prepare fashion_mnist --manual_dir ../shared/datasets/fashion_mnist --data_dir DIR
  python -m jaxgen.data.prepare cifar10 --manual_dir DIR_WITH_cifar-10-binary.tar.gz --data_dir DIR

mnist / fashion_mnist: TFDS finds the idx .gz files in manual_dir and verifies their registered
checksums. cifar10: the archive is placed in TFDS's download cache (under the name TFDS would have
downloaded it to, with a .INFO file), so that TFDS uses it without a network and without checking
it against the registered checksum; this also accepts subsets of the official archive.
Then use data.source="tfds", data.name=NAME, data.data_dir=DIR.
"""
import argparse
import json
import os
import shutil
from typing import Optional

DATASETS = ("mnist", "fashion_mnist", "cifar10")


def prepare(name: str, manual_dir: str, data_dir: str,
            max_examples_per_split: Optional[int] = None) -> None:
  """Builds TFDS dataset `name` in `data_dir` from the files in `manual_dir`, with no network.

  max_examples_per_split: keep only the first N examples of each split (quick tests).
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.core.download import resource  # pylint: disable=g-import-not-at-top
  if name not in DATASETS:
    raise ValueError(f"Cannot prepare {name!r} offline; supported: {DATASETS}.")
  builder = tfds.builder(name, data_dir=data_dir)
  if name == "cifar10":
    downloads = os.path.join(data_dir, "downloads")
    os.makedirs(downloads, exist_ok=True)
    for url, info in builder.url_infos.items():
      src = os.path.join(manual_dir, os.path.basename(url))
      if not os.path.isfile(src):
        raise FileNotFoundError(f"{src} not found: --manual_dir must hold {os.path.basename(url)}.")
      dst = os.path.join(downloads, resource.get_dl_fname(url, info.checksum))
      shutil.copyfile(src, dst)
      with open(dst + ".INFO", "w") as f:
        json.dump({"urls": [url], "original_fname": os.path.basename(url)}, f)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      # cifar10 reads from the pre-filled cache: files in manual_dir would be checksum-verified.
      manual_dir=None if name == "cifar10" else manual_dir,
      # One extraction dir per dataset: TFDS keys its extraction cache by file name only, and mnist
      # and fashion_mnist files share names, so a shared cache would silently mix them up.
      extract_dir=os.path.join(data_dir, "downloads", "extracted", name),
      max_examples_per_split=max_examples_per_split))


def main(argv: Optional[list[str]] = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("name", choices=DATASETS)
  parser.add_argument("--manual_dir", required=True, help="folder with the dataset's source files")
  parser.add_argument("--data_dir", required=True, help="TFDS data_dir to build into")
  parser.add_argument("--max_examples_per_split", type=int, default=None)
  args = parser.parse_args(argv)
  prepare(args.name, args.manual_dir, args.data_dir, args.max_examples_per_split)
  print(f"Prepared {args.name} in {args.data_dir}: use data.source='tfds', data.name={args.name!r}, "
        f"data.data_dir={args.data_dir!r}.")


if __name__ == "__main__":
  main()
