"""Runs one experiment from gin files: train (or resume), evaluate, export, plot.

  python -m l2f_tf --gin_file=gin/sinusoid/l2f_5shot.gin --root_dir=runs/l2f_5shot

``python run_experiment.py ...`` in a source checkout is the same command. --gin_file names a
gin file of the package (``gin/sinusoid/quick.gin`` or ``sinusoid/quick.gin``, from any
directory) or any path; without it the default (sinusoid MAML+L2F, 5-shot) runs. The same
command again resumes the run in --root_dir or finishes its stages after training; another
configuration for a trained folder is refused unless --resume continues the folder's own.
--strategy picks the hardware (docs/scaling.md). User errors end with one line naming the fix
and exit status 1, and so does a full disk (`l2f_tf.train.disk_full`); Ctrl-C saves a
checkpoint and exits with status 130.
"""

from l2f_tf import console  # (l2f_tf is imported first: it sets TF_USE_LEGACY_KERAS)

if __name__ == "__main__":
  console.quiet_third_party()  # Before TensorFlow is imported; --third_party_logs: off.

import os  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402

from absl import app, flags, logging  # noqa: E402

from l2f_tf import run_folder  # noqa: E402
from l2f_tf.train import (disk_full, distribution, experiment, guard, interrupts,  # noqa: E402
                          restore)


def define_flags():
  """The command line (defined only when run, so that importing this module defines no flag)."""
  flags.DEFINE_multi_string("gin_file", [], "Gin config file(s); repeatable.")
  flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. "
                            "'Trainer.num_iterations = 1000'; repeatable.")
  flags.DEFINE_string("root_dir", "runs/default", "Run directory (created or resumed).")
  flags.DEFINE_enum(
      "strategy", None, list(distribution.STRATEGIES),
      "tf.distribute strategy (overrides run_experiment.strategy): default, one_device, "
      "mirrored (all local GPUs, or make_strategy.num_cpu_devices CPU devices), multi_worker "
      "(cluster from TF_CONFIG; run the same command on every worker) or tpu.")
  flags.DEFINE_bool("resume", False, "Continue the run in --root_dir with its own "
                    "operative_config.gin even if --gin_file or --gin_bindings describe another "
                    "experiment (bindings apply on top); without it such a run is refused.")
  console.define_flag()


def user_message(error: BaseException) -> str:
  """The error's own message, without the "In call to configurable ..." lines gin adds."""
  return str(error).split("\n  In call to configurable")[0]


def remove_unused_folder(root_dir: str) -> None:
  """Removes the run folder this command created when the run stopped before writing anything
  but its config (a user error found before training): nothing is left to clean up."""
  run_folder.release_locks()
  left = set(os.listdir(root_dir)) if os.path.isdir(root_dir) else {"?"}
  if left <= {run_folder.CONFIG_NAME, run_folder.LOCK_NAME, run_folder.SETTINGS_NAME}:
    shutil.rmtree(root_dir, ignore_errors=True)


def main(argv):
  del argv
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.INFO)
  bindings = list(FLAGS.gin_bindings)
  if FLAGS.strategy:
    bindings.append(f"run_experiment.strategy = {FLAGS.strategy!r}")
  created = not os.path.exists(FLAGS.root_dir)
  try:
    with disk_full.reported(FLAGS.root_dir):  # (the Runner's own writes raise it themselves)
      restore.setup_run(FLAGS.root_dir, FLAGS.gin_file, bindings, resume=FLAGS.resume)
      experiment.run_experiment(FLAGS.root_dir, resume=FLAGS.resume)
    if distribution.joined_cluster():
      # Every worker is past the final barrier and every file is written: end now, together.
      # TensorFlow's teardown would wait (seconds, sometimes minutes) for the workers that
      # already left.
      interrupts.exit_now(code=0)
  except interrupts.Interrupted as stop:
    logging.warning("%s", user_message(stop))
    interrupts.exit_now()
  except KeyboardInterrupt:
    interrupts.exit_now("Interrupted before training started or after it ended; run the same "
                        "command to go on.")
  except distribution.ClusterError as error:  # A multi-worker run lost or never had a worker.
    logging.error("%s", user_message(error))
    if created:
      remove_unused_folder(FLAGS.root_dir)
    interrupts.exit_now(code=1)  # TensorFlow's own exit would wait for the lost worker.
  except guard.NonFiniteError as error:
    then = ("run the same command to resume from it" if error.last_checkpoint else
            "no checkpoint was written yet, so the same command starts afresh")
    logging.error("%s To go on, lower Trainer.outer_lr or the inner learning rate, set "
                  "Trainer.network_grad_clip, or check the data (a --gin_bindings that changes "
                  "the experiment needs --resume); then %s.", user_message(error), then)
    sys.exit(1)
  except disk_full.DiskFullError as error:  # The line names the file system to free.
    logging.error("%s", user_message(error))
    logging.debug("Where it was raised:", exc_info=True)
    sys.exit(1)
  except ValueError as error:  # User errors: the message names the fix.
    if created:
      remove_unused_folder(FLAGS.root_dir)
    logging.error("%s", user_message(error))
    logging.debug("Where it was raised:", exc_info=True)
    if not FLAGS["verbosity"].present:
      logging.info("(--verbosity=1 also prints where it was raised.)")
    sys.exit(1)


if __name__ == "__main__":
  define_flags()
  app.run(main)
