"""Writes tests/golden/cyclegan_torch.npz: the PyTorch CycleGAN networks of
../shared/bench/peer_torch_cyclegan.py (the pytorch-CycleGAN-and-pix2pix ResNet generator and 70x70
PatchGAN) in miniature, their weights in Flax layout, an input and the outputs.

Not a test and not a jaxgen dependency: it needs `pip install torch==2.13.0`. Run from the repository
root:  python tests/golden/make_cyclegan_golden.py

Generator: ngf 4, 2 residual blocks, on 2 RGB images of 16x16 (reflection padding at every size down to
the 4x4 bottleneck, both transposed convolutions). Discriminator: ndf 4, 3 layers, on 2 images of
40x40 (3x3 logits). Weights N(0, 0.02) as the reference and biases redrawn N(0, 0.1) so a dropped bias
shows. Weights and inputs are float32 values; the outputs are computed in float64, so they carry no
float32 rounding of their own. Keys: "g/<flax path>",
"d/<flax path>", "g_in", "g_out" [2, 16, 16, 3], "d_in", "d_out" [2, 3, 3].
"""
import pathlib
import sys

import numpy as np
import torch

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO.parent / "shared" / "bench"))
import peer_torch_cyclegan as peer  # noqa: E402

# Flax paths of jaxgen.models.cyclegan's convolutions, in the torch modules' order.
G_PATHS = (["c7s1_in", "down0", "down1"] + [f"res{i}/conv{j}" for i in range(2) for j in (1, 2)]
           + ["up0", "up1", "c7s1_out"])
D_PATHS = ["conv0", "conv1", "conv2", "conv3", "logits"]


def _convs(net):
  return [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]


def _export(net, paths, prefix, out):
  convs = _convs(net)
  assert len(convs) == len(paths)
  for m, path in zip(convs, paths):
    torch.nn.init.normal_(m.weight, 0.0, 0.02)
    torch.nn.init.normal_(m.bias, 0.0, 0.1)
    with torch.no_grad():   # float32-representable values, stored as float32
      m.weight.copy_(m.weight.float().double())
      m.bias.copy_(m.bias.float().double())
    w = m.weight.detach().numpy()
    # Conv2d [out, in, kh, kw] -> HWIO; ConvTranspose2d [in, out, kh, kw] -> [kh, kw, in, out].
    out[f"{prefix}/{path}/kernel"] = w.transpose(2, 3, 0, 1) if isinstance(
        m, torch.nn.ConvTranspose2d) else w.transpose(2, 3, 1, 0)
    out[f"{prefix}/{path}/bias"] = m.bias.detach().numpy()


def main() -> None:
  torch.manual_seed(0)
  out = {}
  g, d = peer.generator(4, 2).double(), peer.discriminator(4).double()
  _export(g, G_PATHS, "g", out)
  _export(d, D_PATHS, "d", out)
  rng = np.random.default_rng(0)
  out["g_in"] = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32).astype(np.float64)
  out["d_in"] = rng.uniform(-1, 1, (2, 40, 40, 3)).astype(np.float32).astype(np.float64)
  with torch.no_grad():
    out["g_out"] = g(torch.tensor(out["g_in"]).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    out["d_out"] = d(torch.tensor(out["d_in"]).permute(0, 3, 1, 2))[:, 0].numpy()
  path = REPO / "tests" / "golden" / "cyclegan_torch.npz"
  np.savez_compressed(path, **{k: np.asarray(v, np.float64 if k.endswith("_out") else np.float32)
                               for k, v in out.items()})
  print(f"wrote {path} ({path.stat().st_size} bytes); g_out std {out['g_out'].std():.3f}, "
        f"d_out {out['d_out'].shape}")


if __name__ == "__main__":
  main()
