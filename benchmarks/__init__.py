"""Benchmarks, each a command (python benchmarks/<name>.py); tests import some of them."""
