"""Shared Flax layers used by several model families."""
