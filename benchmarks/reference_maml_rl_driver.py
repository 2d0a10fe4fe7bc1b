"""pytorch-maml-rl's MAML-TRPO on 2D navigation, one JSON record per meta-iteration.

Run by `rl_navigation.py --compare_reference` with the Python of its scratch venv (torch 2.13
CPU, gym 0.23, numpy 2, pyyaml, tqdm), never by the project's own Python:

  <venv>/bin/python benchmarks/reference_maml_rl_driver.py --source=<their checkout> \
      --iterations=7 --num_workers=2 --threads=1 --output=peer.json

It runs their training loop as their train.py does, with their own configuration file
(configs/maml/2d-navigation.yaml: 20 tasks x 20 trajectories, one step at lr 0.1, TRPO), and
writes after every meta-iteration its wall time and the mean return per task before adaptation
(their train_returns) and after one step (valid_returns), so a stopped run keeps what it did.

Their code predates torch 2, gym 0.23 and numpy 2. `make_compatible` patches, in this process
only (their files are not changed):
  - numpy 2 removed ``np.float_``: restored as float64;
  - torch 2 removed ``torch.lstsq(B, A)``: the same solution from ``torch.linalg.lstsq(A, B)``;
  - gym 0.23's ``SyncVectorEnv.step_async`` turns the actions into an iterator, which their
    ``step_wait`` indexes: the actions are kept as given;
  - gym 0.23 reordered ``concatenate(items, out, space)`` to ``(space, items, out)``: their
    call is forwarded in the new order.
"""

import argparse
import json
import os
import sys
import time


def make_compatible() -> None:
  """The patches above (their modules must be importable)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  from maml_rl.envs.utils import sync_vector_env  # pylint: disable=import-outside-toplevel

  if not hasattr(np, "float_"):
    np.float_ = np.float64
  torch.lstsq = lambda b, a: (torch.linalg.lstsq(a, b).solution, None)
  gym_concatenate = sync_vector_env.concatenate
  sync_vector_env.concatenate = lambda items, out, space: gym_concatenate(space, items, out)

  def step_async(self, actions):
    self._actions = actions  # pylint: disable=protected-access

  sync_vector_env.SyncVectorEnv.step_async = step_async


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--source", required=True, help="Their checkout (holds maml_rl/).")
  parser.add_argument("--iterations", type=int, default=5, help="Meta-iterations to run.")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--num_workers", type=int, default=2, help="Their sampler's processes.")
  parser.add_argument("--threads", type=int, default=0,
                      help="torch.set_num_threads in the main process (0: torch's default).")
  parser.add_argument("--output", required=True, help="JSON file, rewritten every iteration.")
  args = parser.parse_args()

  sys.path.insert(0, os.path.abspath(args.source))
  import gym  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  import yaml  # pylint: disable=import-outside-toplevel
  import maml_rl.envs  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  from maml_rl.baseline import LinearFeatureBaseline  # pylint: disable=import-outside-toplevel
  from maml_rl.metalearners import MAMLTRPO  # pylint: disable=import-outside-toplevel
  from maml_rl.samplers import MultiTaskSampler  # pylint: disable=import-outside-toplevel
  from maml_rl.utils.helpers import (  # pylint: disable=import-outside-toplevel
      get_input_size, get_policy_for_env)
  from maml_rl.utils.reinforcement_learning import (  # pylint: disable=import-outside-toplevel
      get_returns)

  make_compatible()
  if args.threads:
    torch.set_num_threads(args.threads)
  config_path = os.path.join(args.source, "configs", "maml", "2d-navigation.yaml")
  with open(config_path) as f:
    config = yaml.load(f, Loader=yaml.FullLoader)
  torch.manual_seed(args.seed)
  env = gym.make(config["env-name"], **config.get("env-kwargs", {}))
  env.close()
  policy = get_policy_for_env(env, hidden_sizes=config["hidden-sizes"],
                              nonlinearity=config["nonlinearity"])
  policy.share_memory()
  baseline = LinearFeatureBaseline(get_input_size(env))
  sampler = MultiTaskSampler(config["env-name"], env_kwargs=config.get("env-kwargs", {}),
                             batch_size=config["fast-batch-size"], policy=policy,
                             baseline=baseline, env=env, seed=args.seed,
                             num_workers=args.num_workers)
  metalearner = MAMLTRPO(policy, fast_lr=config["fast-lr"], first_order=config["first-order"],
                         device="cpu")
  record = {"torch": torch.__version__, "gym": gym.__version__,
            "torch_threads": torch.get_num_threads(), "num_workers": args.num_workers,
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "config": {k: config[k] for k in ("meta-batch-size", "fast-batch-size", "num-steps",
                                              "fast-lr", "max-kl", "cg-iters", "cg-damping")},
            "seconds": [], "before": [], "after": []}
  try:
    for _ in range(args.iterations):
      start = time.perf_counter()
      tasks = sampler.sample_tasks(num_tasks=config["meta-batch-size"])
      futures = sampler.sample_async(tasks, num_steps=config["num-steps"],
                                     fast_lr=config["fast-lr"], gamma=config["gamma"],
                                     gae_lambda=config["gae-lambda"], device="cpu")
      metalearner.step(*futures, max_kl=config["max-kl"], cg_iters=config["cg-iters"],
                       cg_damping=config["cg-damping"], ls_max_steps=config["ls-max-steps"],
                       ls_backtrack_ratio=config["ls-backtrack-ratio"])
      train_episodes, valid_episodes = sampler.sample_wait(futures)
      record["seconds"].append(time.perf_counter() - start)
      # [tasks, trajectories] returns; one mean per task.
      record["before"].append(get_returns(train_episodes[0]).mean(axis=1).tolist())
      record["after"].append(get_returns(valid_episodes).mean(axis=1).tolist())
      with open(args.output + ".partial", "w") as f:
        json.dump(record, f)
      os.replace(args.output + ".partial", args.output)
  finally:
    sampler.close()


if __name__ == "__main__":
  main()
