"""CycleGAN's networks (Zhu et al. 2017, arXiv:1703.10593, Sec. 4 and Appendix 7.2), as in the
authors' pytorch-CycleGAN-and-pix2pix code (`networks.py`: ResnetGenerator, NLayerDiscriminator).

ResNet generator (Johnson et al. 2016), in the paper's notation for 256x256 images:
  c7s1-64, d128, d256, R256 x n_blocks, u128, u64, c7s1-3
  c7s1-k: reflection pad 3, 7x7 conv (stride 1), instance norm, ReLU (the last one: conv + tanh);
  dk: 3x3 conv, stride 2, zero padding 1, instance norm, ReLU;
  Rk: reflection pad 1, 3x3 conv, IN, ReLU, reflection pad 1, 3x3 conv, IN, plus the input;
  uk: 3x3 transposed conv, stride 2 (padding 1, output_padding 1), IN, ReLU.
  6 residual blocks for 128x128 images and below, 9 for 256x256 and above (the paper).
70x70 PatchGAN discriminator: C64-C128-C256-C512, then a 1-channel conv, all 4x4; Ck is conv-IN-
  LeakyReLU(0.2), stride 2 except C512 and the last (stride 1), zero padding 1, no IN on C64. Its
  output is one logit per overlapping 70x70 patch: [B, 30, 30] for 256x256 inputs.

Conventions of the reference code kept here: every conv has a bias (instance norm has no affine
transform, so nothing cancels it), weights N(0, 0.02) and biases 0 (`init_weights`, init_type
'normal', gain 0.02), instance norm with eps 1e-5 and no running statistics.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.nn.conv import ConvTranspose3x3s2
from jaxgen.nn.linear import Conv
from jaxgen.nn.norm import instance_norm

# The reference's init_weights(init_type='normal', init_gain=0.02): conv weights N(0, 0.02), biases 0.
_INIT = nn.initializers.normal(stddev=0.02)


def default_num_blocks(image_size: int) -> int:
  """The paper's residual block count: 6 for images of 128x128 and below, 9 above."""
  return 6 if image_size <= 128 else 9


def reflect_pad(x: jax.Array, p: int) -> jax.Array:
  """PyTorch's ReflectionPad2d(p) on NHWC: mirrors without repeating the edge pixel."""
  return jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")


def _conv(features: int, kernel: int, stride: int, padding: int, dtype: Any, name: str) -> Conv:
  return Conv(features, (kernel, kernel), strides=stride, padding=((padding, padding),) * 2,
              kernel_init=_INIT, dtype=dtype, param_dtype=jnp.float32, name=name)


class ResnetBlock(nn.Module):
  """Rk: x + IN(conv3(pad(ReLU(IN(conv3(pad(x))))))), [B, H, W, features] -> same."""
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = _conv(self.features, 3, 1, 0, self.dtype, "conv1")(reflect_pad(x, 1))
    h = nn.relu(instance_norm(h)).astype(self.dtype)
    h = _conv(self.features, 3, 1, 0, self.dtype, "conv2")(reflect_pad(h, 1))
    return x + instance_norm(h).astype(self.dtype)


class ResnetGenerator(nn.Module):
  """images [B, H, W, C_in] in [-1, 1] -> images float32 [B, H, W, channels] in [-1, 1].

  H and W must be multiples of 4 (two stride-2 stages down, two up) and at least 8.

  Attributes:
    channels: output channels (3 RGB, 1 grey).
    features: channels of the first layer (the reference's ngf, 64); the bottleneck has 4x.
    num_blocks: residual blocks at the bottleneck (6 at <= 128 px, 9 at 256 px).
    dtype: compute dtype; params and normalisation statistics are float32.
  """
  channels: int = 3
  features: int = 64
  num_blocks: int = 9
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    f, dt = self.features, self.dtype
    x = x.astype(dt)
    h = _conv(f, 7, 1, 0, dt, "c7s1_in")(reflect_pad(x, 3))                    # c7s1-64
    h = nn.relu(instance_norm(h)).astype(dt)
    for i, width in enumerate((2 * f, 4 * f)):                                 # d128, d256
      h = _conv(width, 3, 2, 1, dt, f"down{i}")(h)
      h = nn.relu(instance_norm(h)).astype(dt)
    for i in range(self.num_blocks):                                            # R256 x n
      h = ResnetBlock(4 * f, dt, name=f"res{i}")(h)
    for i, width in enumerate((2 * f, f)):                                     # u128, u64
      h = ConvTranspose3x3s2(width, kernel_init=_INIT, dtype=dt, name=f"up{i}")(h)
      h = nn.relu(instance_norm(h)).astype(dt)
    h = _conv(self.channels, 7, 1, 0, dt, "c7s1_out")(reflect_pad(h, 3))       # c7s1-3
    return jnp.tanh(h.astype(jnp.float32))


class PatchDiscriminator(nn.Module):
  """images [B, H, W, C] in [-1, 1] -> per-patch logits float32 [B, h, w].

  With num_layers=3 (the reference's 'basic' netD) each logit sees a 70x70 patch (`receptive_field`)
  and a 256x256 input gives 30x30 logits (`output_size`).

  Attributes:
    features: channels of the first layer (the reference's ndf, 64); doubled per layer up to 8x.
    num_layers: stride-2 layers (3 = C64-C128-C256, then C512 at stride 1).
    dtype: compute dtype.
  """
  features: int = 64
  num_layers: int = 3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    dt = self.dtype
    h = nn.leaky_relu(_conv(self.features, 4, 2, 1, dt, "conv0")(x.astype(dt)), 0.2)   # C64, no IN
    for n in range(1, self.num_layers + 1):
      stride = 2 if n < self.num_layers else 1                          # C128, C256 (s2), C512 (s1)
      h = _conv(self.features * min(2 ** n, 8), 4, stride, 1, dt, f"conv{n}")(h)
      h = nn.leaky_relu(instance_norm(h), 0.2).astype(dt)
    h = _conv(1, 4, 1, 1, dt, "logits")(h)
    return h[..., 0].astype(jnp.float32)


def _layers(num_layers: int) -> list[tuple[int, int, int]]:
  """(kernel, stride, padding) of the discriminator's convolutions, input to output."""
  return [(4, 2, 1)] * num_layers + [(4, 1, 1), (4, 1, 1)]


def receptive_field(num_layers: int = 3) -> int:
  """Side of the input patch one discriminator logit sees: 70 for num_layers=3."""
  r = 1
  for k, s, _ in reversed(_layers(num_layers)):
    r = (r - 1) * s + k
  return r


def output_size(image_size: int, num_layers: int = 3) -> int:
  """Side of the discriminator's logit map for image_size inputs (30 for 256, 3 layers); < 1 means
  the image is too small for that depth."""
  n = image_size
  for k, s, p in _layers(num_layers):
    n = (n + 2 * p - k) // s + 1
  return n


def reference_init(module: nn.Module, rng: jax.Array, example: jax.Array) -> Any:
  """The module's params as the reference's init_weights draws them: every conv kernel N(0, 0.02),
  every bias 0 (the distribution of the modules' own initializers), from ONE normal draw split into
  the kernels. Same distribution as `module.init(rng, example)["params"]`, but with the default
  threefry PRNG each separate draw is its own program to compile: for the 4 networks of a CycleGAN
  this takes the init's compile from ~40 s to ~1 s on 2 CPU cores, and skips the forward pass that
  `init` traces.

  Args:
    module: a ResnetGenerator or PatchDiscriminator (any module whose params are "kernel"s and
      "bias"es).
    rng: PRNG key.
    example: an input of the right shape (only its shape is used).
  """
  shapes = jax.eval_shape(module.init, rng, example)["params"]
  leaves, tree = jax.tree_util.tree_flatten_with_path(shapes)
  kernels = [s.size for path, s in leaves if path[-1].key == "kernel"]
  flat = 0.02 * jax.random.normal(rng, (sum(kernels),), jnp.float32)
  offsets = iter(np.cumsum([0] + kernels))
  out = []
  for path, s in leaves:
    if path[-1].key == "kernel":
      o = next(offsets)
      out.append(flat[o:o + s.size].reshape(s.shape).astype(s.dtype))
    elif path[-1].key == "bias":
      out.append(jnp.zeros(s.shape, s.dtype))
    else:
      raise ValueError(f"reference_init: unexpected param {jax.tree_util.keystr(path)} (only conv "
                       f"kernels and biases are drawn as the reference does).")
  return jax.tree_util.tree_unflatten(tree, out)
