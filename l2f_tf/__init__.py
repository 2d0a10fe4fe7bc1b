"""l2f_tf: MAML and Learning to Forget (L2F) for TensorFlow 2 / Keras 3.

tf-agents and tensorflow-probability only import with legacy Keras behind ``tf.keras``,
so ``TF_USE_LEGACY_KERAS`` is set here, before anything imports TensorFlow. Models in this
package always use Keras 3 through ``import keras``; ``tf.keras`` is never used.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
