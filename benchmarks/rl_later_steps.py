"""Controlled check: is the overshoot of the 2nd and 3rd evaluation steps their step length?

  python benchmarks/rl_later_steps.py --run_dir=runs/rl_navigation/reinforce/maml

Restores a finished meta-RL run and evaluates it on ``--num_tasks`` held-out tasks (the
domain's ``eval_seed``, as in results.json) after 0..``--steps`` adaptation steps, once per
``--scale``: the first step is the trained one (theta_bar and lr as in training), every later
plain policy-gradient step is multiplied by the scale. One plain gradient step is linear in
its learning rate, so scale 0.5 is the same as a later-step lr of 0.05 instead of 0.1.
Only this changes between the rows; tasks and sampling seeds are the same.
"""

import l2f_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

import tempfile

from absl import app, flags

from l2f_tf.stats import mean_and_ci95
from l2f_tf.train import restore
from l2f_tf.train.meta_rl_trainer import MetaRLTrainer

RUN_DIRS = flags.DEFINE_multi_string("run_dir", [], "Finished meta-RL runs; repeatable.")
NUM_TASKS = flags.DEFINE_integer("num_tasks", 40, "Held-out tasks (a multiple of the "
                                 "meta-batch).")
STEPS = flags.DEFINE_integer("steps", 3, "Adaptation steps.")
SCALES = flags.DEFINE_list("scale", ["1.0", "0.5", "0.25"], "Multipliers of the later steps.")


def main(argv):
  del argv
  for run_dir in RUN_DIRS.value:
    domain, learner = restore.restore_learner(run_dir)
    trainer = MetaRLTrainer(learner, domain, tempfile.mkdtemp(prefix="later_steps_"))
    plain_step = trainer.step_from
    print(f"\n{run_dir}: average return (95% CI over {NUM_TASKS.value} tasks) after "
          f"0..{STEPS.value} steps")
    for scale in (float(s) for s in SCALES.value):
      def scaled_step(params, batch, scale=scale):
        return [p + scale * (q - p) for p, q in zip(params, plain_step(params, batch))]
      trainer.step_from = scaled_step
      returns = trainer.held_out_returns(NUM_TASKS.value, STEPS.value, domain.eval_seed)
      cells = [mean_and_ci95(values) for values in returns]
      print(f"  later steps x {scale:<5}" +
            "".join(f" {c['mean']:9.2f} +- {c['ci95']:6.2f}" for c in cells))


if __name__ == "__main__":
  app.run(main)
