"""Meta-RL environments as tf-agents `PyEnvironment`s with a task interface.

Every environment is a `MetaPyEnvironment`: `sample_tasks(n, seed)` draws reproducible task
dicts, `set_task(task)` / `get_task()` switch the simulated task, episodes are truncated after
`horizon` steps and `elapsed_steps` gives the time index for the baseline. `make_env` builds one
by the name the experiment configs use; `BatchedNavigation2D` is the vectorised 2D navigation
the sampler uses for speed.
"""

import difflib

from l2f_tf.rl.envs.base import MetaPyEnvironment
from l2f_tf.rl.envs.mujoco_tasks import AntDir, AntVel, HalfCheetahDir, HalfCheetahVel
from l2f_tf.rl.envs.navigation import BatchedNavigation2D, Navigation2D, sample_goal_tasks

ENVIRONMENTS = {
    "Navigation2D": Navigation2D,
    "HalfCheetahVel": HalfCheetahVel,
    "HalfCheetahDir": HalfCheetahDir,
    "AntVel": AntVel,
    "AntDir": AntDir,
}


def check_env_name(name, setting: str = "environment") -> str:
  """Returns `name` if it is one of `ENVIRONMENTS`, else raises a ValueError listing them.

  Args:
    name: the environment's name, as the experiment configs spell it.
    setting: what the name was given as, for the message (e.g. "MetaRLDomain.env_name").
  """
  if isinstance(name, str) and name in ENVIRONMENTS:
    return name
  by_lower = {known.lower(): known for known in ENVIRONMENTS}
  close = ([by_lower[name.lower()]] if isinstance(name, str) and name.lower() in by_lower else
           difflib.get_close_matches(str(name), sorted(ENVIRONMENTS), n=2, cutoff=0.6))
  hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
  raise ValueError(f"Unknown {setting} {name!r}: {hint}Known environments: "
                   f"{', '.join(sorted(ENVIRONMENTS))}.")


def make_env(name: str, horizon: int = None, seed=None) -> MetaPyEnvironment:
  """Builds a meta-RL environment by name.

  Args:
    name: one of `ENVIRONMENTS`: "Navigation2D", "HalfCheetahVel", "HalfCheetahDir", "AntVel",
      "AntDir".
    horizon: episode length; None keeps the environment's default (100 for navigation, 200 for
      MuJoCo).
    seed: seed of the initial task and of any reset noise.

  Returns:
    The environment, with a task already set.
  """
  check_env_name(name)
  kwargs = {} if horizon is None else {"horizon": horizon}
  return ENVIRONMENTS[name](seed=seed, **kwargs)


__all__ = ["ENVIRONMENTS", "AntDir", "AntVel", "BatchedNavigation2D", "HalfCheetahDir",
           "HalfCheetahVel", "MetaPyEnvironment", "Navigation2D", "check_env_name", "make_env",
           "sample_goal_tasks"]
