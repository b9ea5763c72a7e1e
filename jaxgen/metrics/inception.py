"""Inception-v3 of the TF 2015-12-05 graph (the FID network) in Flax, and the batched feature extractor.

The layer names follow the TF graph as NVIDIA's TorchScript port keeps them (`mixed_9/tower_mixed_conv`),
so the weights map one to one. Quirks of that graph kept here because FID values depend on them:
BatchNorm with eps 1e-3 and no gamma, 3x3 average pools that exclude the padding from the mean, and a
max pool (not an average pool) in the last block's pool branch.

Input: float [N, 299, 299, 3] already scaled by `(x - 128) / 128`; see `preprocess.py`.
Output: pool3 [N, 2048] and, when the `fc` weights are present, the 1008-way logits used by IS.
"""
from typing import Any, Dict, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxgen.metrics import preprocess, weights as weights_lib

BN_EPS = 1e-3
# (features, kernel, stride, padding): padding "SAME" or "VALID" as in the TF graph.
Spec = Tuple[int, Tuple[int, int], int, str]


class ConvBN(nn.Module):
  """Conv (no bias) -> BatchNorm (inference, no gamma, eps 1e-3) -> ReLU."""
  features: int
  kernel: Tuple[int, int]
  stride: int = 1
  padding: str = "SAME"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cin = x.shape[-1]
    kernel = self.param("kernel", nn.initializers.zeros, (*self.kernel, cin, self.features))
    beta = self.param("beta", nn.initializers.zeros, (self.features,))
    mean = self.param("mean", nn.initializers.zeros, (self.features,))
    var = self.param("var", nn.initializers.ones, (self.features,))
    # BatchNorm folded into the conv: one pass over the activations instead of three.
    scale = jax.lax.rsqrt(var + BN_EPS)
    # float32 runs at full precision on every backend (TPU/GPU default to bf16/tf32 passes otherwise).
    precision = jax.lax.Precision.HIGHEST if self.dtype == jnp.float32 else None
    y = jax.lax.conv_general_dilated(
        x.astype(self.dtype), (kernel * scale).astype(self.dtype), (self.stride, self.stride),
        self.padding, dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision)
    return nn.relu(y + (beta - mean * scale).astype(self.dtype))


class Tower(nn.Module):
  """A chain of ConvBNs named conv, conv_1, conv_2, ... as in the TF graph."""
  specs: Sequence[Spec]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i, (f, k, s, p) in enumerate(self.specs):
      x = ConvBN(f, k, s, p, self.dtype, name="conv" if i == 0 else f"conv_{i}")(x)
    return x


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
  # TF's SAME average pool divides by the number of valid (non-padding) inputs.
  return nn.avg_pool(x, (3, 3), (1, 1), "SAME", count_include_pad=False)


def _max_pool_3x3_s2(x: jax.Array) -> jax.Array:
  return nn.max_pool(x, (3, 3), (2, 2), "VALID")


class InceptionA(nn.Module):  # 35x35 blocks: mixed, mixed_1, mixed_2
  pool_features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    d = self.dtype
    return jnp.concatenate([
        ConvBN(64, (1, 1), dtype=d, name="conv")(x),
        Tower(((48, (1, 1), 1, "SAME"), (64, (5, 5), 1, "SAME")), d, name="tower")(x),
        Tower(((64, (1, 1), 1, "SAME"), (96, (3, 3), 1, "SAME"), (96, (3, 3), 1, "SAME")), d,
              name="tower_1")(x),
        Tower(((self.pool_features, (1, 1), 1, "SAME"),), d, name="tower_2")(_avg_pool_3x3(x)),
    ], axis=-1)


class InceptionB(nn.Module):  # 35 -> 17 reduction: mixed_3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    d = self.dtype
    return jnp.concatenate([
        ConvBN(384, (3, 3), 2, "VALID", d, name="conv")(x),
        Tower(((64, (1, 1), 1, "SAME"), (96, (3, 3), 1, "SAME"), (96, (3, 3), 2, "VALID")), d,
              name="tower")(x),
        _max_pool_3x3_s2(x).astype(d),
    ], axis=-1)


class InceptionC(nn.Module):  # 17x17 blocks: mixed_4 .. mixed_7
  c7: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    d, c7 = self.dtype, self.c7
    return jnp.concatenate([
        ConvBN(192, (1, 1), dtype=d, name="conv")(x),
        Tower(((c7, (1, 1), 1, "SAME"), (c7, (1, 7), 1, "SAME"), (192, (7, 1), 1, "SAME")), d,
              name="tower")(x),
        Tower(((c7, (1, 1), 1, "SAME"), (c7, (7, 1), 1, "SAME"), (c7, (1, 7), 1, "SAME"),
               (c7, (7, 1), 1, "SAME"), (192, (1, 7), 1, "SAME")), d, name="tower_1")(x),
        Tower(((192, (1, 1), 1, "SAME"),), d, name="tower_2")(_avg_pool_3x3(x)),
    ], axis=-1)


class InceptionD(nn.Module):  # 17 -> 8 reduction: mixed_8
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    d = self.dtype
    return jnp.concatenate([
        Tower(((192, (1, 1), 1, "SAME"), (320, (3, 3), 2, "VALID")), d, name="tower")(x),
        Tower(((192, (1, 1), 1, "SAME"), (192, (1, 7), 1, "SAME"), (192, (7, 1), 1, "SAME"),
               (192, (3, 3), 2, "VALID")), d, name="tower_1")(x),
        _max_pool_3x3_s2(x).astype(d),
    ], axis=-1)


class InceptionE(nn.Module):  # 8x8 blocks: mixed_9 (average pool branch), mixed_10 (max pool branch)
  max_pool: bool
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    d = self.dtype
    a = ConvBN(384, (1, 1), dtype=d, name="tower_conv")(x)
    b = ConvBN(448, (1, 1), dtype=d, name="tower_1_conv")(x)
    b = ConvBN(384, (3, 3), dtype=d, name="tower_1_conv_1")(b)
    # The TF graph's last block pools with max, not average (a quirk FID depends on).
    pooled = nn.max_pool(x, (3, 3), (1, 1), "SAME") if self.max_pool else _avg_pool_3x3(x)
    return jnp.concatenate([
        ConvBN(320, (1, 1), dtype=d, name="conv")(x),
        ConvBN(384, (1, 3), dtype=d, name="tower_mixed_conv")(a),
        ConvBN(384, (3, 1), dtype=d, name="tower_mixed_conv_1")(a),
        ConvBN(384, (1, 3), dtype=d, name="tower_1_mixed_conv")(b),
        ConvBN(384, (3, 1), dtype=d, name="tower_1_mixed_conv_1")(b),
        ConvBN(192, (1, 1), dtype=d, name="tower_2_conv")(pooled),
    ], axis=-1)


class InceptionV3(nn.Module):
  """[N, 299, 299, 3] float in [-1, 1) -> {"pool3": [N, 2048] float32, "logits": [N, 1008] (with_fc)}."""
  with_fc: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> Dict[str, jax.Array]:
    d = self.dtype
    x = ConvBN(32, (3, 3), 2, "VALID", d, name="conv")(x)
    x = ConvBN(32, (3, 3), 1, "VALID", d, name="conv_1")(x)
    x = ConvBN(64, (3, 3), 1, "SAME", d, name="conv_2")(x)
    x = _max_pool_3x3_s2(x)
    x = ConvBN(80, (1, 1), 1, "VALID", d, name="conv_3")(x)
    x = ConvBN(192, (3, 3), 1, "VALID", d, name="conv_4")(x)
    x = _max_pool_3x3_s2(x)
    for i, pool_features in enumerate((32, 64, 64)):
      x = InceptionA(pool_features, d, name="mixed" if i == 0 else f"mixed_{i}")(x)
    x = InceptionB(d, name="mixed_3")(x)
    for i, c7 in enumerate((128, 160, 160, 192)):
      x = InceptionC(c7, d, name=f"mixed_{4 + i}")(x)
    x = InceptionD(d, name="mixed_8")(x)
    x = InceptionE(False, d, name="mixed_9")(x)
    x = InceptionE(True, d, name="mixed_10")(x)
    pool3 = jnp.mean(x.astype(jnp.float32), axis=(1, 2))  # the 8x8 average pool
    out = {"pool3": pool3}
    if self.with_fc:
      out["logits"] = nn.Dense(1008, name="fc", precision=jax.lax.Precision.HIGHEST)(pool3)
    return out


def param_shapes(with_fc: bool) -> Dict[str, Tuple[int, ...]]:
  """Flat {"mixed_9/tower_conv/kernel": shape} of the network's params (no compute, no weights)."""
  shapes = jax.eval_shape(InceptionV3(with_fc).init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, 299, 299, 3), jnp.float32))["params"]
  flat = jax.tree_util.tree_flatten_with_path(shapes)[0]
  return {"/".join(k.key for k in path): tuple(v.shape) for path, v in flat}


class InceptionExtractor:
  """uint8 images of any size -> Inception pool3 features (and IS logits when the `fc` weights exist).

  Weights are loaded (and on first use fetched and verified) when the extractor is first called.
  Images go through the exact TF1 bilinear resize to 299x299 in one jitted function per input size and
  then through the network, jitted once for [batch_size, 299, 299, 3]: the last partial batch is
  padded, so any number of images compiles the trunk only once.

  Args:
    dtype: compute dtype of the convolutions; float32 (default) reproduces the reference features,
      bfloat16 is faster on accelerators but moves features by a few percent (unfit for FID).
    mesh: when given, each batch is sharded over its 'data' (and 'fsdp') axes and params replicated.
      The mesh may span several processes: every process then passes the same images, feeds only
      its own rows to its devices, and gets all the features back (gathered by XLA).
    batch_size: images per network call; a multiple of the mesh's batch-axis size.
    weights: a `.npz` made by `weights.convert` or a torch weights file; None uses
      $JAXGEN_INCEPTION_WEIGHTS, else the cached (or freshly fetched) pool3 trunk.
  """

  def __init__(self, dtype: Any = jnp.float32, mesh: Optional[Mesh] = None, batch_size: int = 64,
               weights: Optional[str] = None):
    self.dtype, self.mesh, self.batch_size, self.weights = dtype, mesh, batch_size, weights
    self._params = None
    if mesh is not None:
      axes = tuple(a for a in ("data", "fsdp") if a in mesh.axis_names)
      size = int(np.prod([mesh.shape[a] for a in axes]))
      if not axes or batch_size % size:
        raise ValueError(f"batch_size={batch_size} must be a multiple of the mesh's data axes "
                         f"{axes} (size {size}); mesh axes are {mesh.axis_names}")
      self._batch_sharding = NamedSharding(mesh, P(axes))
      self._replicated = NamedSharding(mesh, P())

  @property
  def has_logits(self) -> bool:
    self._load()
    return "fc" in self._params

  @property
  def weights_id(self) -> str:
    """sha256 of the weights in use: part of every cache key built from these features."""
    self._load()
    return self._weights_id

  def _load(self) -> None:
    if self._params is not None:
      return
    flat, self._weights_id = weights_lib.load_params(self.weights)
    expected = param_shapes("fc/kernel" in flat)
    weights_lib.check_shapes(flat, expected)
    params = {}
    for name, value in flat.items():
      *path, leaf = name.split("/")
      node = params
      for p in path:
        node = node.setdefault(p, {})
      node[leaf] = jnp.asarray(value, jnp.float32)
    if self.mesh is not None:
      params = jax.device_put(params, self._replicated)
    self._params = params
    model = InceptionV3(with_fc="fc" in params, dtype=self.dtype)
    net = lambda p, x: model.apply({"params": p}, x)  # noqa: E731
    if self.mesh is None:
      self._net, self._resize = jax.jit(net), jax.jit(preprocess.resize_and_scale)
    else:   # features come back replicated: every process gets all of them
      self._net = jax.jit(net, out_shardings=self._replicated)
      self._resize = jax.jit(preprocess.resize_and_scale, out_shardings=self._batch_sharding)

  def __call__(self, images) -> Dict[str, np.ndarray]:
    """uint8 [N, H, W, C] (C = 1 or 3, any H, W) -> {"pool3": float32 [N, 2048], "logits": [N, 1008]}."""
    images = preprocess.check_images(images)
    self._load()
    n, outs = images.shape[0], []
    for start in range(0, n, self.batch_size):
      chunk = images[start:start + self.batch_size]
      pad = self.batch_size - chunk.shape[0]
      if pad:
        chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), np.uint8)])
      if self.mesh is not None:   # this process's rows -> one global array over the whole mesh
        rows = np.split(chunk, jax.process_count())[jax.process_index()]
        chunk = jax.make_array_from_process_local_data(self._batch_sharding, rows, chunk.shape)
      out = self._net(self._params, self._resize(chunk))
      outs.append({k: np.asarray(v)[:self.batch_size - pad] for k, v in out.items()})
    if not outs:
      raise ValueError("no images given to the Inception extractor (N = 0)")
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
