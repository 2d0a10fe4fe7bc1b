"""Shared test set-up: legacy-Keras flag before TensorFlow, gin cleared around every test."""

import l2f_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before tensorflow is imported)

import gin
import pytest


@pytest.fixture(autouse=True)
def clear_gin():
  gin.clear_config()
  yield
  gin.clear_config()
