"""Optimizers and learning-rate schedules from a config (optax)."""
import ml_collections
import optax


def make_schedule(cfg: ml_collections.ConfigDict, num_steps: int) -> optax.Schedule:
  """Learning-rate schedule. cfg.schedule in {constant, cosine, linear}; cfg.warmup_steps linear warm-up."""
  lr = cfg.lr
  warmup = cfg.get("warmup_steps", 0)
  kind = cfg.get("schedule", "constant")
  if kind == "constant":
    main = optax.constant_schedule(lr)
  elif kind == "cosine":
    main = optax.cosine_decay_schedule(lr, max(num_steps - warmup, 1), alpha=cfg.get("final_lr_frac", 0.0))
  elif kind == "linear":
    main = optax.linear_schedule(lr, lr * cfg.get("final_lr_frac", 0.0), max(num_steps - warmup, 1))
  else:
    raise ValueError(f"Unknown optim.schedule={kind!r}; use one of constant, cosine, linear.")
  if warmup:
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])
  return main


def make_optimizer(cfg: ml_collections.ConfigDict, num_steps: int) -> optax.GradientTransformation:
  """An optax optimizer from cfg: name (adam | adamw | sgd), lr, b1, b2, eps, weight_decay,
  grad_clip (global norm; 0 = off), schedule, warmup_steps."""
  schedule = make_schedule(cfg, num_steps)
  name = cfg.get("name", "adam")
  if name == "adam":
    opt = optax.adam(schedule, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999), eps=cfg.get("eps", 1e-8))
  elif name == "adamw":
    opt = optax.adamw(schedule, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999), eps=cfg.get("eps", 1e-8),
                      weight_decay=cfg.get("weight_decay", 0.0))
  elif name == "sgd":
    opt = optax.sgd(schedule, momentum=cfg.get("momentum", None))
  else:
    raise ValueError(f"Unknown optim.name={name!r}; use one of adam, adamw, sgd.")
  if cfg.get("grad_clip", 0.0):
    opt = optax.chain(optax.clip_by_global_norm(cfg.grad_clip), opt)
  return opt
