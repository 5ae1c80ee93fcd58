"""Shared test helpers: the one place test modules import from (a test module never imports another)."""
