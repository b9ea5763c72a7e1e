"""Pure Flax Linen modules, one file per family. Models know nothing of training."""
