"""Meta-RL environments as tf-agents `PyEnvironment`s with a task interface (`MetaPyEnvironment`).

`make_env` builds one by the name the experiment configs use; `BatchedNavigation2D` is the
vectorised 2D navigation the sampler uses. They need the ``rl`` extra (tf-agents, gymnasium
with MuJoCo): importing this package without it raises `l2f_tf.extras.MissingExtraError`, one
line naming the install command.
"""

import difflib

from l2f_tf import extras

extras.require("rl", "Meta-RL's environments (l2f_tf.rl.envs)")

# pylint: disable=wrong-import-position
from l2f_tf.rl.envs.meta_env import MetaPyEnvironment  # noqa: E402
from l2f_tf.rl.envs.mujoco_tasks import (  # noqa: E402
    AntDir, AntVel, HalfCheetahDir, HalfCheetahVel)
from l2f_tf.rl.envs.navigation import (  # noqa: E402
    BatchedNavigation2D, Navigation2D, sample_goal_tasks)

ENVIRONMENTS = {
    "Navigation2D": Navigation2D,
    "HalfCheetahVel": HalfCheetahVel,
    "HalfCheetahDir": HalfCheetahDir,
    "AntVel": AntVel,
    "AntDir": AntDir,
}


def check_env_name(name, setting: str = "environment") -> str:
  """`name` if it is one of `ENVIRONMENTS`, else a ValueError listing them that names the
  ``setting`` it was given as (e.g. "MetaRLDomain.env_name")."""
  if isinstance(name, str) and name in ENVIRONMENTS:
    return name
  by_lower = {known.lower(): known for known in ENVIRONMENTS}
  close = ([by_lower[name.lower()]] if isinstance(name, str) and name.lower() in by_lower else
           difflib.get_close_matches(str(name), sorted(ENVIRONMENTS), n=2, cutoff=0.6))
  hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
  raise ValueError(f"Unknown {setting} {name!r}: {hint}Known environments: "
                   f"{', '.join(sorted(ENVIRONMENTS))}.")


def make_env(name: str, horizon: int = None, seed=None) -> MetaPyEnvironment:
  """The environment `name` (one of `ENVIRONMENTS`), with a task set; ``horizon`` None keeps
  its default (100 for navigation, 200 for MuJoCo); ``seed`` seeds the initial task and any
  reset noise."""
  check_env_name(name)
  kwargs = {} if horizon is None else {"horizon": horizon}
  return ENVIRONMENTS[name](seed=seed, **kwargs)


__all__ = ["ENVIRONMENTS", "AntDir", "AntVel", "BatchedNavigation2D", "HalfCheetahDir",
           "HalfCheetahVel", "MetaPyEnvironment", "Navigation2D", "check_env_name", "make_env",
           "sample_goal_tasks"]
