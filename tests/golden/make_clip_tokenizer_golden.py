"""Writes tests/golden/clip_tokenizer.npz: open_clip's own CLIP tokenizer on real and awkward strings.

Not a test and not a jaxgen dependency: it needs `pip install torch==2.13.0 ftfy regex` and PyPI.
Run from the repository root:  python tests/golden/make_clip_tokenizer_golden.py

It pip-downloads the wheel open-clip-torch==3.3.0 (sha256 pinned), unpacks it to a temporary folder
and imports `open_clip/tokenizer.py` by file path (the package's __init__ needs a torchvision built
for the local torch, which PyPI does not serve here); that module loads the wheel's own
bpe_simple_vocab_16e6.txt.gz. Strings: the 8 captions of ../shared/datasets/skimage_captions, shapes
captions, and unicode / HTML / whitespace / case / punctuation / length edge cases. Keys:
  "texts"        unicode [N]
  "tokens77"     int32 [N, 77]   open_clip.tokenizer.tokenize(texts) (context 77)
  "tokens8"      int32 [N, 8]    the same with context_length=8 (truncation keeps EOT last)
  "decoded"      unicode [N]     SimpleTokenizer.decode(encode(text)) (CLIP's decode of the ids)
"""
import importlib.util
import json
import pathlib
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from jaxgen.data import clip_tokenizer as ct  # noqa: E402  (only for the pinned names and hashes)
from jaxgen.data import shapes  # noqa: E402

LONG = ("a very long caption that goes on and on, describing a sunny beach with palm trees, blue "
        "water, white sand, three children building a sandcastle, a dog chasing a red frisbee, "
        "seagulls overhead, boats on the horizon, a lighthouse on the rocky point, and clouds "
        "shaped like animals drifting slowly across the bright afternoon sky above everyone")
AWKWARD = [
    "", " ", "   \t\n  ", "a", "A RED CIRCLE ON A GRAY BACKGROUND", "it's 3.14!", "It'S 3.14!!",
    "Don't we'll they're I'M you've he'd", "café naïve résumé Ångström", "cafe\u0301 combining e\u0301",
    "ÉCOLE ΣΊΣΥΦΟΣ Straße", "日本語のテキスト 中文字符 한국어", "emoji 🐱🚀👍🏽 👨‍👩‍👧",
    "ligatures ﬁ ﬂ ﬃ ﬀ", "&amp;amp; &lt;b&gt;bold&lt;/b&gt; &quot;quoted&quot; &#39;x&#39;",
    "&amp;amp;amp; triple", "<b>tag &amp;amp; kept</b>",
    "tab\tseparated\nnew\r\nlines\x0bvt", "mojibake: â€œquotedâ€\x9d and cafÃ©",
    "<start_of_text> literal <end_of_text> tokens", "numbers 1234567890 and 3,000.50 $5 100%",
    "under_score-hyphen/slash back\\slash (parens) [brackets] {braces}", "!!!???...,,,;;;",
    "zero\u200bwidth and nbsp\u00a0space", "full-width ＡＢＣ１２３", "arabic مرحبا hindi नमस्ते",
    "x" * 300, LONG, LONG.upper(), " ".join(["word"] * 100),
]


def _open_clip_tokenizer(tmp: pathlib.Path):
  req = tmp / "req.txt"
  req.write_text(f"{ct.REQUIREMENT} --hash=sha256:{ct.ARCHIVE_SHA256}\n")
  subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "-r",
                  str(req), "-d", str(tmp)], check=True)
  with zipfile.ZipFile(tmp / ct.ARCHIVE) as z:
    z.extractall(tmp / "wheel", [n for n in z.namelist() if n.startswith("open_clip/")])
  spec = importlib.util.spec_from_file_location("open_clip_tokenizer",
                                                tmp / "wheel" / "open_clip" / "tokenizer.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def main():
  rows = [json.loads(l) for l in
          (REPO.parent / "shared/datasets/skimage_captions/captions.jsonl").read_text().splitlines()
          if l.strip()]
  texts = [r["caption"] for r in rows]
  texts += shapes.captions(shapes.params(np.arange(6), "train")) + AWKWARD
  with tempfile.TemporaryDirectory() as tmp:
    oc = _open_clip_tokenizer(pathlib.Path(tmp))
    tok77 = oc.tokenize(texts).numpy().astype(np.int32)
    tok8 = oc.tokenize(texts, context_length=8).numpy().astype(np.int32)
    decoded = [oc._tokenizer.decode(oc._tokenizer.encode(t)) for t in texts]  # pylint: disable=protected-access
  out = REPO / "tests" / "golden" / "clip_tokenizer.npz"
  np.savez_compressed(out, texts=np.array(texts), tokens77=tok77, tokens8=tok8,
                      decoded=np.array(decoded))
  print(f"wrote {out} ({out.stat().st_size:,} bytes): {len(texts)} strings, "
        f"{int((tok77 == ct.EOT).sum())} with EOT, longest {int((tok77 > 0).sum(1).max())} ids")


if __name__ == "__main__":
  main()
