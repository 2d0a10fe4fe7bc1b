"""The layout of a run directory: the one place that names what a run writes.

```
<root>/operative_config.gin   the full config actually used (reloaded on resume)
<root>/checkpoints/           the latest checkpoints (weights, optimizer, step)
<root>/train/  <root>/eval/   TensorBoard event files
<root>/best/                  best validated weights and their scores (few-shot classification)
<root>/results.json           the final evaluation (mean, 95% CI, n)
<root>/saved_model/           the exported learner
<root>/<name>.png             figures
```

Supervised and meta-RL experiments, the configuration code, the export and the comparison
tool all find these paths here, so a change of layout is a change of this file only.
"""

import json
import os
import tempfile
from typing import Any, Dict

CONFIG_NAME = "operative_config.gin"


class RunFolder:
  """Paths of one run directory (nothing is created until something is written)."""

  def __init__(self, root_dir: str):
    self.root = str(root_dir)

  def _path(self, name: str) -> str:
    return os.path.join(self.root, name)

  @property
  def config(self) -> str:
    return self._path(CONFIG_NAME)

  @property
  def checkpoints(self) -> str:
    return self._path("checkpoints")

  @property
  def train_summaries(self) -> str:
    return self._path("train")

  @property
  def eval_summaries(self) -> str:
    return self._path("eval")

  @property
  def best(self) -> str:
    return self._path("best")

  @property
  def results(self) -> str:
    return self._path("results.json")

  @property
  def saved_model(self) -> str:
    return self._path("saved_model")

  def figure(self, name: str) -> str:
    """The path of a figure, e.g. ``figure("test_tasks.png")``."""
    return self._path(name)

  def write_results(self, results: Dict[str, Any]) -> str:
    """Writes results.json atomically (a temporary file in the folder, then a rename), so a
    crash never leaves half a file."""
    os.makedirs(self.root, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".results.", suffix=".tmp", dir=self.root)
    try:
      with os.fdopen(fd, "w") as f:
        json.dump(results, f, indent=2)
      os.replace(tmp, self.results)
    except BaseException:
      if os.path.exists(tmp):
        os.remove(tmp)
      raise
    return self.results

  def read_results(self) -> Dict[str, Any]:
    if not os.path.exists(self.results):
      raise ValueError(f"{self.results} is missing: run_experiment.py has not finished in "
                       f"{self.root} (re-run its command to finish it).")
    with open(self.results) as f:
      return json.load(f)
