"""The errors jaxgen reports to its users, in the lowest module, so that every layer (parallel, data,
optim, methods, the loop) can raise them without importing each other. `jaxgen.main` turns both into
one line on stderr and exit code 2."""


class ConfigError(ValueError):
  """A config value that cannot work. The message names the value and how to fix it."""


class CheckpointError(RuntimeError):
  """No usable checkpoint (or pretrained tree) where one was required. The message names the
  directory or step and what to do."""
