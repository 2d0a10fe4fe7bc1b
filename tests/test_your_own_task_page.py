"""docs/your_own_task.md runs as printed, commands included: its files (``# file:`` blocks) are
written into an empty folder, its Python snippets run there (making the runs in Python), then
every command of its bash blocks, in order: the command-line runs of the gin files that import
the page's module, and evaluate, compare and analyze on both kinds of runs. Training runs in
smoke mode (tiny loops); the tools run as they are (analyze needs a meta-batch of tasks,
more than smoke mode's 4)."""

import os
import shlex
import subprocess
import sys

import pytest

from tests import test_snippets

pytestmark = pytest.mark.slow

PAGE = os.path.join(test_snippets.REPO, "docs", "your_own_task.md")


def bash_commands(path):
  """The commands of the page's bash blocks, continuations joined, in order."""
  found = []
  for language, _, code in test_snippets.blocks(path):
    if language == "bash":
      found += [line.strip() for line in code.replace("\\\n", " ").splitlines() if line.strip()]
  return found


def test_the_page_has_files_snippets_and_commands():
  assert set(test_snippets.file_blocks(PAGE)) == {"my_task.py", "quadratic.gin",
                                                   "quadratic_l2f.gin"}
  commands = bash_commands(PAGE)
  assert [c.split()[2] for c in commands] == ["l2f_tf"] * 2 + [
      "l2f_tf.evaluate", "l2f_tf.compare", "l2f_tf.analyze"] * 2


def test_the_page_runs_as_printed(tmp_path):
  folder = tmp_path / "page"
  failure = test_snippets.run_page(PAGE, str(folder), str(tmp_path / "cache"))
  assert not failure, failure
  printed = []
  for command in bash_commands(PAGE):
    words = shlex.split(command)
    assert words[:2] == ["python", "-m"], command
    env = test_snippets.smoke_env()
    if words[2] != "l2f_tf":
      env.pop("L2F_TF_SMOKE")
    done = subprocess.run([sys.executable] + words[1:], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{command} failed:\n{done.stderr[-3000:]}"
    printed.append(done.stdout)
  # compare paired the runs of each kind; analyze wrote its numbers for both kinds.
  assert sum("Paired differences on the same 4 tasks" in out for out in printed) == 2, printed
  for name in ("cli_analysis", "quadratic_analysis"):
    assert os.path.exists(folder / "runs" / name / "analysis.json")
