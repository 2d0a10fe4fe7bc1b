"""One experiment end to end, as configured in gin: train (or resume), evaluate, write results,
export, plot.

``run_experiment.domain`` picks the problem and ``run_experiment.trainer`` the kind of training
(`l2f_tf.train.trainer.Trainer` for supervised domains, the default;
`l2f_tf.train.meta_rl_trainer.MetaRLTrainer` for meta-RL); the
:class:`~l2f_tf.train.runner.Runner` does the rest the same way for both.
"""

from typing import Optional, Sequence

import gin
import keras

from l2f_tf import precision as precision_lib
from l2f_tf.domains.base import Domain, SupervisedDomain
from l2f_tf.meta.learner import MetaLearner
from l2f_tf.train.runner import Runner
from l2f_tf.train.trainer import Trainer


@gin.configurable
def build_learner(domain: Domain, seed: int = 0, learner_cls=MetaLearner,
                  precision: Optional[str] = None) -> MetaLearner:
  """The domain's network wrapped in a (gin-configured) meta-learner, initialised from seed.

  The network and the attenuator are built under the Keras dtype policy ``precision`` (None:
  gin's ``precision.name``, float32 by default; see `l2f_tf.precision`), and the global policy
  is restored afterwards.
  """
  precision = precision_lib.configured() if precision is None else precision_lib.check(precision)
  if precision != "float32" and not isinstance(domain, SupervisedDomain):
    raise ValueError(f"Precision {precision!r} is implemented for supervised domains only; "
                     f"{type(domain).__name__} trains in float32.")
  keras.utils.set_random_seed(seed)
  metric_fn = domain.task_metric if domain.log_metric_per_step else None
  with precision_lib.policy_scope(precision):
    return learner_cls(model=domain.build_model(), loss_fn=domain.loss_fn, metric_fn=metric_fn)


@gin.configurable
def run_experiment(root_dir: str, domain: Domain = gin.REQUIRED, trainer=Trainer,
                   eval_steps: Optional[Sequence[int]] = None, num_eval_tasks: int = 600,
                   export_steps: Optional[int] = None, plot: bool = True):
  """Trains (resuming from root_dir if possible), then evaluates, exports and plots.

  Args:
    root_dir: the run directory (its layout: README, "What a run writes").
    domain: the problem, e.g. ``@SinusoidRegression()``.
    trainer: the trainer class, called as ``trainer(learner=, domain=, root_dir=)``:
      ``@Trainer`` (supervised) or ``@MetaRLTrainer``.
    eval_steps: adaptation-step counts at which the metric is reported besides 0 (default
      1..the training number of inner steps).
    num_eval_tasks: held-out evaluation tasks per distribution (the same tasks for every model).
    export_steps: inner steps baked into the SavedModel (default: the training setting).
    plot: save the run's figure.

  Returns:
    The results dictionary written to results.json.
  """
  learner = build_learner(domain)
  runner = Runner(trainer(learner=learner, domain=domain, root_dir=root_dir))
  return runner.run(eval_steps, num_eval_tasks, export_steps, plot)
