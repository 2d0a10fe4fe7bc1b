"""Controlled check: is the overshoot of the 2nd and 3rd evaluation steps their step length?

  python benchmarks/rl_later_steps.py --run_dir=runs/rl_navigation/reinforce/maml
  python benchmarks/rl_later_steps.py --run_dir=... --later_steps_lr=0.1,0.05,0.025

Restores a finished meta-RL run once per ``--later_steps_lr`` value (the run's own config with
``MetaLearner.later_steps_lr`` bound to it: the setting an evaluation or an export takes) and
evaluates it on ``--num_tasks`` held-out tasks (the domain's ``eval_seed``, as in
results.json) after 0..``--steps`` adaptation steps: the first step is the trained one
(theta_bar and lr as in training), every later plain policy-gradient step takes the bound
rate. Only this changes between the rows; tasks and sampling seeds are the same. For L2F the
row also gives theta's return before attenuation (the trajectories its task embedding is
computed from), which separates a better starting policy from better adaptation.
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
LATER_LRS = flags.DEFINE_list("later_steps_lr", ["0.1", "0.05", "0.025"],
                              "Learning rates of the steps after the first (trained) one.")


def cells(values) -> str:
  return "".join(f" {c['mean']:9.2f} +- {c['ci95']:6.2f}"
                 for c in (mean_and_ci95(v) for v in values))


def main(argv):
  del argv
  for run_dir in RUN_DIRS.value:
    print(f"\n{run_dir}: average return (95% CI over {NUM_TASKS.value} tasks) after "
          f"0..{STEPS.value} steps")
    for lr in (float(x) for x in LATER_LRS.value):
      domain, learner = restore.restore_learner(
          run_dir, gin_bindings=[f"MetaLearner.later_steps_lr = {lr}"])
      trainer = MetaRLTrainer(learner, domain, tempfile.mkdtemp(prefix="later_steps_"))
      returns = trainer.held_out_returns(NUM_TASKS.value, STEPS.value, domain.eval_seed)
      print(f"  later steps at lr {lr:<6}" + cells(returns.after_steps))
      if returns.unattenuated is not None:
        print(f"  theta before attenuation" + cells([returns.unattenuated]))


if __name__ == "__main__":
  app.run(main)
