"""Runs one experiment from gin files: train (or resume), evaluate, export, plot.

  python run_experiment.py --gin_file=gin/sinusoid/l2f_5shot.gin --root_dir=runs/l2f_5shot

Without --gin_file the embedded default (sinusoid MAML+L2F, 5-shot) runs. Running the same
command again resumes from the last checkpoint in --root_dir. --strategy picks the hardware
(README, "Scaling out"): e.g. --strategy=mirrored for all local GPUs, or --strategy=multi_worker
on every machine of a TF_CONFIG cluster.
"""

import l2f_tf  # noqa: F401  (must come before TensorFlow: sets TF_USE_LEGACY_KERAS)

from absl import app, flags, logging

from l2f_tf import config
from l2f_tf.train import distribution, experiment

FLAGS = flags.DEFINE_multi_string("gin_file", [], "Gin config file(s); repeatable.")
BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. "
                                     "'Trainer.num_iterations = 1000'; repeatable.")
ROOT_DIR = flags.DEFINE_string("root_dir", "runs/default", "Run directory (created or resumed).")
STRATEGY = flags.DEFINE_enum(
    "strategy", None, list(distribution.STRATEGIES),
    "tf.distribute strategy (overrides run_experiment.strategy): default, one_device, mirrored "
    "(all local GPUs, or make_strategy.num_cpu_devices CPU devices), multi_worker (cluster from "
    "TF_CONFIG; run the same command on every worker) or tpu.")


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  bindings = list(BINDINGS.value)
  if STRATEGY.value:
    bindings.append(f"run_experiment.strategy = {STRATEGY.value!r}")
  config.setup_run(ROOT_DIR.value, FLAGS.value, bindings)
  experiment.run_experiment(ROOT_DIR.value)


if __name__ == "__main__":
  app.run(main)
