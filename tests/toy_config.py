"""Config file for the toy method (tests): python -m jaxgen.main --config=tests/toy_config.py ..."""
from toy_method import toy_config


def get_config(arg=None):
  del arg
  return toy_config()
