"""SimCLR: NT-Xent against a hand computation and, on the 2 test devices, the global-batch loss and
gradients equal to the single-device full-batch formula; ResNet parameter counts equal torchvision's
trunks; the probe / kNN evaluators' solvers on problems with known answers; config errors; learning checks on real CIFAR-10 (loss and kNN accuracy) and MNIST (linear probe
margin over a random encoder)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import parallel
from jaxgen.configs import load_config_file
from jaxgen.errors import ConfigError
from jaxgen.methods import simclr
from jaxgen.metrics import probe
from jaxgen.models import resnet
from jaxgen.state import jit_once


def _hand_nt_xent(z1, z2, t):
  z = np.concatenate([z1, z2]).astype(np.float64)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  n = len(z1)
  total = 0.0
  for i in range(2 * n):
    j = (i + n) % (2 * n)
    sims = np.exp(z @ z[i] / t)
    total += -np.log(sims[j] / (sims.sum() - sims[i]))
  return total / (2 * n)


def test_nt_xent_equals_hand_computation():
  rng = np.random.RandomState(0)
  z1, z2 = rng.randn(6, 5).astype(np.float32), rng.randn(6, 5).astype(np.float32)
  np.testing.assert_allclose(float(simclr.nt_xent(z1, z2, 0.5)), _hand_nt_xent(z1, z2, 0.5), rtol=1e-5)
  # Identical, mutually orthogonal views at low temperature: the loss goes to 0.
  e = np.eye(4, dtype=np.float32)
  assert float(simclr.nt_xent(e, e, 0.05)) < 1e-6


def test_global_loss_and_grads_equal_full_batch():
  mesh = parallel.create_mesh({"data": -1})
  assert mesh.size == 2
  rng = np.random.RandomState(1)
  z1, z2 = (jnp.asarray(rng.randn(8, 16).astype(np.float32)) for _ in range(2))
  sh = parallel.batch_sharding(mesh)
  z1s, z2s = jax.device_put(z1, sh), jax.device_put(z2, sh)
  glob = jax.jit(jax.value_and_grad(lambda a, b: simclr.nt_xent_global(a, b, 0.5, mesh), (0, 1)))
  full = jax.value_and_grad(lambda a, b: simclr.nt_xent(a, b, 0.5), (0, 1))
  (lg, gg), (lf, gf) = glob(z1s, z2s), full(z1, z2)
  np.testing.assert_allclose(float(lg), float(lf), rtol=1e-6)
  np.testing.assert_allclose(float(lf), _hand_nt_xent(np.asarray(z1), np.asarray(z2), 0.5), rtol=1e-5)
  for a, b in zip(gg, gf):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


@pytest.mark.parametrize("depth,stem,want", [(18, "imagenet", 11_176_512), (50, "imagenet", 23_508_032)])
def test_resnet_param_counts_equal_torchvision_trunks(depth, stem, want):
  """torchvision resnet18 / resnet50 minus their 1000-way fc (BN scale and bias counted)."""
  shapes = jax.eval_shape(lambda: resnet.ResNet(depth, stem=stem).init(
      jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False))
  assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"])) == want


def test_scaled_lr():
  assert simclr.scaled_lr(0.3, 4096, "linear") == pytest.approx(4.8)
  assert simclr.scaled_lr(0.075, 4096, "sqrt") == pytest.approx(4.8)
  assert simclr.scaled_lr(1.0, 512, "none") == 1.0


def _newton_logreg(x, y, k, l2, iters=50):
  """Reference: Newton's method on the same objective (float64, numpy)."""
  n, d = x.shape
  xa = np.concatenate([x, np.ones((n, 1))], 1).astype(np.float64)
  w = np.zeros((d + 1, k))
  reg = np.diag(np.r_[np.full(d, l2), 0.0])
  yo = np.eye(k)[y]
  for _ in range(iters):
    p = np.exp(xa @ w - (xa @ w).max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    g = xa.T @ (p - yo) / n + reg @ w
    hess = np.zeros(((d + 1) * k,) * 2)
    for i in range(n):
      s = np.diag(p[i]) - np.outer(p[i], p[i])
      hess += np.kron(np.outer(xa[i], xa[i]), s) / n
    hess += np.kron(reg, np.eye(k))
    # The bias is free up to a shared constant (singular Hessian): the min-norm step keeps sum(b) = 0,
    # as gradient steps from zero do.
    w -= np.linalg.lstsq(hess, g.reshape(-1), rcond=None)[0].reshape(d + 1, k)
  return w[:d], w[d]


def test_logistic_regression_equals_newton_reference():
  rng = np.random.RandomState(0)
  x = rng.randn(40, 3).astype(np.float32)
  y = rng.randint(0, 3, 40)
  (p, _, _) = probe.logistic_regression(x, y, 3, l2=0.1, max_iters=500, tol=1e-7)
  w, b = _newton_logreg(x, y, 3, 0.1)
  np.testing.assert_allclose(np.asarray(p["w"]), w, atol=1e-4)
  np.testing.assert_allclose(np.asarray(p["b"]), b, atol=1e-4)


def test_probe_and_knn_on_separable_features():
  rng = np.random.RandomState(0)
  centres = rng.randn(5, 20) * 5
  ytr, yte = rng.randint(0, 5, 500), rng.randint(0, 5, 200)
  xtr = (centres[ytr] + rng.randn(500, 20)).astype(np.float32)
  xte = (centres[yte] + rng.randn(200, 20)).astype(np.float32)
  a, b = probe.standardise(xtr, xte)
  (p, _, _) = probe.logistic_regression(a, ytr, 5, l2=1e-4)
  assert np.mean(np.argmax(np.asarray(b @ p["w"] + p["b"]), -1) == yte) >= 0.99
  pred = probe.knn_predict(xtr, ytr, xte, k=20, temperature=0.1, num_classes=5, chunk=64)
  assert np.mean(np.asarray(pred) == yte) >= 0.99
  # Known answer: 1-NN returns the label of the most cosine-similar train row.
  tr = np.array([[1, 0], [0, 1], [-1, 0.1]], np.float32)
  te = np.array([[0.9, 0.2], [0.1, 2.0], [-3, 0]], np.float32)
  pred = probe.knn_predict(tr, np.array([0, 1, 2]), te, k=1, temperature=0.1, num_classes=3, chunk=2)
  np.testing.assert_array_equal(np.asarray(pred), [0, 1, 2])
  # k=3 weighted vote: two weak neighbours of class 1 lose to one near neighbour of class 0 at t=0.1.
  tr = np.array([[1, 0], [0.2, 1], [0.3, 1]], np.float32)
  pred = probe.knn_predict(tr, np.array([0, 1, 1]), np.array([[1, 0.05]], np.float32), k=3,
                           temperature=0.1, num_classes=2)
  assert int(pred[0]) == 0


def test_config_errors():
  c = load_config_file("configs/simclr/cifar10.py:tiny")
  simclr.SimCLR(c).validate()
  for key, value, word in [("simclr.temperature", 0.0, "temperature"), ("simclr.lr_scaling", "log", "lr_scaling"),
                           ("model.depth", 19, "depth"), ("model.stem", "x", "stem")]:
    bad = load_config_file("configs/simclr/cifar10.py:tiny")
    section, name = key.split(".")
    bad[section][name] = value
    with pytest.raises(ConfigError, match=word):
      simclr.SimCLR(bad)
  bad = load_config_file("configs/simclr/cifar10.py:tiny")
  bad.eval.knn.k = 0
  from jaxgen import evaluators
  with pytest.raises(ConfigError, match="knn.k"):
    evaluators.validate(bad, can_sample=False)


def _pretrain_and_probe(train, test, steps=150, batch=64, seed=0):
  """SimCLR with a small ResNet (width 8, one block in each of two stages: 16-d features, 64-d
  projection), batch `batch` (NT-Xent over 2 x batch views) with the CIFAR-10 config's LARS at lr 1.0
  (linear scaling: peak 0.25 at batch 64) and augmentations, `steps` steps on the 2 test devices.
  Returns (losses, (linear probe, kNN) accuracy before, the same after): the frozen encoder's
  features of `train` -> `test` (L-BFGS logistic regression on standardised features, l2 1e-4; kNN
  with k=20, t=0.1)."""
  c = load_config_file("configs/simclr/cifar10.py:tiny")
  c.model.update(dict(width=8, out_dim=64, stages=(1, 1)))
  c.train.update(dict(batch_size=batch, num_steps=steps))
  c.optim.update(dict(lr=1.0, warmup_steps=10))
  m = simclr.SimCLR(c)
  (xtr, ytr), (xte, yte) = train, test
  img = lambda a: jnp.asarray(a, jnp.float32) / 127.5 - 1  # noqa: E731
  embed = jax.jit(m.embed_images)

  def accuracies(state):
    ftr, fte = (np.concatenate([np.asarray(embed(state, {"image": img(x[i:i + 500])}))
                                for i in range(0, len(x), 500)]) for x in (xtr, xte))
    a, b = probe.standardise(ftr, fte)
    p, _, _ = probe.logistic_regression(a, ytr, 10, l2=1e-4)
    linear = float(np.mean(np.argmax(np.asarray(b @ p["w"] + p["b"]), -1) == yte))
    pred = probe.knn_predict(ftr, ytr, fte, k=20, temperature=0.1, num_classes=10)
    return linear, float(np.mean(np.asarray(pred) == yte))

  state = jit_once(m.init)(jax.random.PRNGKey(seed), {"image": img(xtr[:batch])})
  before = accuracies(state)
  step, sharding = jax.jit(m.train_step), parallel.batch_sharding(m.mesh)
  order = np.random.default_rng(seed)
  losses = []
  for i in range(steps):
    rows = {"image": jax.device_put(img(xtr[order.permutation(len(xtr))[:batch]]), sharding)}
    state, metrics = step(state, rows, jax.random.PRNGKey(i + 1000 * seed))
    losses.append(float(metrics["loss"]))
  after = accuracies(state)
  print(f"loss {losses[0]:.3f} -> {np.mean(losses[-10:]):.3f}; linear probe {before[0]:.3f} -> "
        f"{after[0]:.3f}; kNN {before[1]:.3f} -> {after[1]:.3f}")
  return losses, before, after


def test_learning_check_on_real_cifar10(cifar_jpeg_classes):
  """SimCLR (`_pretrain_and_probe`, 150 steps of batch 64) on 1000 real CIFAR-10 JPEGs (100 per
  class). The loss must fall from ~4.6 (log(127) = 4.84 for uninformative projections) below 4.35,
  and the frozen features (1000 train -> 500 held-out test images, chance 0.10) must beat the
  untrained encoder's by 0.02 in kNN accuracy. Measured here: loss 4.62 -> 4.15 (mean of the last
  10 steps), kNN 0.236 -> 0.280. The linear probe is printed only: random convolutional features
  (which keep colour, which the colour-jittered views teach SimCLR to ignore) are a strong linear
  baseline on CIFAR-10 at this size: 0.294 -> 0.294 here; with 5000 training images (1000 test),
  0.305 -> 0.336 (seed 0) and 0.317 -> 0.327 (seed 1): too close to assert. The MNIST check below
  asserts the probe margin."""
  losses, before, after = _pretrain_and_probe(cifar_jpeg_classes["train"], cifar_jpeg_classes["test"])
  assert losses[0] > 4.5, losses[0]
  assert np.mean(losses[-10:]) < 4.35, losses[-10:]
  assert after[1] > before[1] + 0.02, (before, after)


def test_linear_probe_beats_a_random_encoder_on_real_mnist(mnist_numpy):
  """The same pre-training, 100 steps, on 1000 real MNIST training digits (zero-padded to 32x32, grey
  tiled to RGB). A linear probe on the frozen features (1000 train -> 1000 held-out test digits,
  chance 0.10) must beat the untrained encoder's by 0.04. Measured here: 0.478 -> 0.578 (kNN 0.369
  -> 0.521); 150 steps: 0.478 -> 0.547, and with seed 1 0.460 -> 0.574."""
  def rgb32(x):
    return np.tile(np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0))), (1, 1, 1, 3))
  (xtr, ytr), (xte, yte) = mnist_numpy["train"], mnist_numpy["test"]
  _, before, after = _pretrain_and_probe((rgb32(xtr[:1000]), ytr[:1000]), (rgb32(xte[:1000]), yte[:1000]),
                                          steps=100)
  assert after[0] > before[0] + 0.04, (before, after)
