"""l2f_tf: MAML and Learning to Forget (L2F) for TensorFlow 2 / Keras 3.

tf-agents and tensorflow-probability only import when TensorFlow's own Keras attribute is the
legacy tf_keras package, so ``TF_USE_LEGACY_KERAS`` is set here, before anything imports
TensorFlow. Models in this package always use Keras 3 through ``import keras``, never
TensorFlow's Keras attribute.

The public API is importable from here (``l2f_tf.MetaLearner``, ...). It is resolved lazily so
that light modules such as the dataset readers do not pull in TensorFlow. A script whose first
use of TensorFlow comes through these names gets the command line's filter of TensorFlow's
start-up lines on stderr (`l2f_tf.console`; ``L2F_THIRD_PARTY_LOGS=1`` shows them).
"""

import importlib
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

_PUBLIC = {
    "Learner": "l2f_tf.meta.contract",
    "MetaLearner": "l2f_tf.meta.learner",
    "TaskConditionedAttenuation": "l2f_tf.meta.attenuation",
    "TaskIndependentAttenuation": "l2f_tf.meta.attenuation",
    "degree_of_conflict": "l2f_tf.meta.diagnostics",
    "LEO": "l2f_tf.meta.leo",
    "LEOAttenuation": "l2f_tf.meta.leo",
    "LEONetwork": "l2f_tf.models.leo_network",
    "BatchNorm": "l2f_tf.models.batch_norm",
    "MaxPool": "l2f_tf.models.pooling",
    "Episode": "l2f_tf.data.episode",
    "SinusoidTasks": "l2f_tf.data.sinusoid_tasks",
    "SinusoidRegression": "l2f_tf.domains.sinusoid",
    "FewShotClassification": "l2f_tf.domains.few_shot",
    "ensure_glyphs": "l2f_tf.data.glyphs",
    "FewShotEmbeddings": "l2f_tf.domains.embeddings",
    "ArrayClassification": "l2f_tf.domains.arrays",
    "ArrayRegression": "l2f_tf.domains.arrays",
    "ensure_glyph_embeddings": "l2f_tf.train.pretrain",
    "MetaRLDomain": "l2f_tf.domains.meta_rl",
    "Domain": "l2f_tf.domains.base",
    "SupervisedDomain": "l2f_tf.domains.base",
    "Trainer": "l2f_tf.train.trainer",
    "MetaRLTrainer": "l2f_tf.train.meta_rl_trainer",
    "Runner": "l2f_tf.train.runner",
    "run_experiment": "l2f_tf.train.experiment",
    "restore_learner": "l2f_tf.train.restore",
    "export": "l2f_tf.export",
}


def __getattr__(name):
  if name in _PUBLIC:
    if "tensorflow" not in sys.modules:  # A script's first use: TensorFlow starts next.
      from l2f_tf import console  # pylint: disable=import-outside-toplevel
      console.quiet_third_party(argv=[], info_filter=False)
    module = importlib.import_module(_PUBLIC[name])
    return module if name == "export" else getattr(module, name)
  raise AttributeError(f"module 'l2f_tf' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(_PUBLIC))
