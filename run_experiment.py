"""Runs one experiment from gin files: train (or resume), evaluate, export, plot.

  python run_experiment.py --gin_file=gin/sinusoid/l2f_5shot.gin --root_dir=runs/l2f_5shot

Without --gin_file the embedded default (sinusoid MAML+L2F, 5-shot) runs. Running the same
command again resumes from the last checkpoint in --root_dir.
"""

import l2f_tf  # noqa: F401  (must come before TensorFlow: sets TF_USE_LEGACY_KERAS)

from absl import app, flags, logging

from l2f_tf import config
from l2f_tf.train import experiment

FLAGS = flags.DEFINE_multi_string("gin_file", [], "Gin config file(s); repeatable.")
BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. "
                                     "'Trainer.num_iterations = 1000'; repeatable.")
ROOT_DIR = flags.DEFINE_string("root_dir", "runs/default", "Run directory (created or resumed).")


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  config.setup_run(ROOT_DIR.value, FLAGS.value, BINDINGS.value)
  experiment.run_experiment(ROOT_DIR.value)


if __name__ == "__main__":
  app.run(main)
