"""Every Python snippet of the README and of docs/ runs as printed.

The ```python blocks of one page run in order, in one namespace (a later block may use names of
an earlier one, as a reader would), in a fresh process whose working directory is an empty
folder, with ``L2F_TF_SMOKE=1`` (`l2f_tf.smoke`: at most a few meta-iterations and evaluation
tasks, everything else real). A snippet that reads a run folder made by a command of the same
page (``runs/nav_l2f`` after ``python run_experiment.py ... --root_dir=runs/nav_l2f``; else of
another page) gets it from that very command, run first in the same way. A block whose first
line is ``# file: <name>`` (a module or gin file the reader saves) is written to that file in
the folder first, and not run. A failure names the page and the line.
"""

import fcntl
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FENCE = re.compile(r"^```(\w*)\s*$")
RUN_DIR = re.compile(r"""["'](runs/[\w.-]+)""")


def pages():
  return [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))


def blocks(path):
  """[(language, first line number of the code, code)] of the fenced blocks of a page."""
  found, language, start, lines = [], None, 0, []
  with open(path) as f:
    for number, line in enumerate(f, start=1):
      match = FENCE.match(line.rstrip("\n"))
      if language is None and match:
        language, start, lines = match.group(1) or "text", number + 1, []
      elif language is not None and line.strip() == "```":
        found.append((language, start, "".join(lines)))
        language = None
      elif language is not None:
        lines.append(line)
  return found


FILE_MARK = re.compile(r"^# file: (\S+)\n")


def file_blocks(path):
  """{name: text} of the page's blocks that a reader saves as files (first line ``# file:
  <name>``)."""
  return {match.group(1): code for _, _, code in blocks(path)
          if (match := FILE_MARK.match(code))}


def python_pages():
  return [p for p in pages()
          if any(lang == example_language(p) for lang, _, _ in blocks(p))]


def commands(path):
  """The shell commands of a page's bash / plain blocks: continuations joined, ``&&`` split,
  comments dropped."""
  found = []
  for language, _, code in blocks(path):
    if language not in ("bash", "sh", "text", "shell"):
      continue
    for line in code.replace("\\\n", " ").splitlines():
      line = line.split(" #", 1)[0].strip()
      if line and not line.startswith("#"):
        found.extend(part.strip() for part in line.split("&&"))
  return found


def making_command(path, run_dir):
  """The ``python run_experiment.py`` command that writes ``run_dir``: the page's own, else the
  first of the README's and the other pages'; None if there is none."""
  for command in commands(path) + [c for p in pages() if p != path for c in commands(p)]:
    if not command.startswith("python run_experiment.py"):
      continue  # (text blocks also hold file trees and prose with quotes)
    words = shlex.split(command)
    if words[:2] == ["python", "run_experiment.py"] and f"--root_dir={run_dir}" in words:
      return [sys.executable, os.path.join(REPO, "run_experiment.py")] + words[2:]
  return None


def smoke_env():
  env = dict(os.environ, L2F_TF_SMOKE="1", PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
  return env


DRIVER = textwrap.dedent("""
    import json, sys
    page, blocks = sys.argv[1], json.load(open(sys.argv[2]))
    namespace = {"__name__": "__snippet__"}
    for line, code in blocks:
      print(f"--- {page}, line {line}", flush=True)
      exec(compile("\\n" * (line - 1) + code, page, "exec"), namespace)
    """)


def test_the_pages_have_snippets():
  assert os.path.join(REPO, "README.md") in python_pages()


def test_commands_are_found():
  """The command lookup itself: continuations, ``&&`` and comments (a lookup that finds nothing
  would let the snippet test skip the command it needs)."""
  readme = os.path.join(REPO, "README.md")
  command = making_command(readme, "runs/quickstart")
  assert command is not None and command[1].endswith("run_experiment.py")
  assert "--root_dir=runs/quickstart" in command


def example_language(page) -> str:
  """The fence tag of a page's runnable examples: ``python``, except on the API page, whose
  ``python`` blocks are signatures (checked by tests/test_api_doc.py) and whose examples are
  ``py`` blocks."""
  return "py" if os.path.relpath(page, REPO) == os.path.join("docs", "api.md") else "python"


def made_run(cache, page, run_dir):
  """``cache/run_dir``, made by the docs' command for it once per test session, also across
  xdist workers (a lock file serialises them; a marker file says the folder is complete).
  Returns (path, None) or (None, what failed)."""
  name = os.path.relpath(page, REPO)
  path = os.path.join(cache, run_dir)
  with open(os.path.join(cache, run_dir.replace("/", "_") + ".lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    marker = os.path.join(path, ".made_by_the_snippet_test")
    if os.path.exists(marker):
      return path, None
    command = making_command(page, run_dir)
    if command is None:
      return None, (f"{name}: a snippet reads {run_dir}, but no 'python run_experiment.py "
                    f"--root_dir={run_dir}' command of the docs makes it")
    shutil.rmtree(path, ignore_errors=True)  # a half-made folder of a failed attempt
    done = subprocess.run(command, cwd=cache, env=smoke_env(), capture_output=True,
                          text=True, timeout=900)
    if done.returncode:
      return None, f"{name}: {' '.join(command[1:])} failed:\n{done.stderr[-3000:]}"
    open(marker, "w").close()
  return path, None


def run_page(page, folder, cache):
  """Runs the page's Python blocks in ``folder``; returns None or what failed. The run folders
  the blocks read are made in ``cache`` (:func:`made_run`) and linked into ``folder``."""
  python = [(line, code) for lang, line, code in blocks(page)
            if lang == example_language(page) and not FILE_MARK.match(code)]
  source = "\n".join(code for _, code in python)
  made_here = set(re.findall(r"""Trainer\([^)]*?["'](runs/[\w.-]+)""", source, re.S))
  name = os.path.relpath(page, REPO)
  os.makedirs(os.path.join(folder, "runs"))
  for file_name, text in file_blocks(page).items():
    with open(os.path.join(folder, file_name), "w") as f:
      f.write(text)
  for run_dir in sorted(set(RUN_DIR.findall(source)) - made_here):
    path, failure = made_run(cache, page, run_dir)
    if failure:
      return failure
    os.symlink(path, os.path.join(folder, run_dir))
  with open(os.path.join(folder, "blocks.json"), "w") as f:
    json.dump(python, f)
  with open(os.path.join(folder, "driver.py"), "w") as f:
    f.write(DRIVER)
  done = subprocess.run([sys.executable, "driver.py", name, "blocks.json"], cwd=folder,
                        env=smoke_env(), capture_output=True, text=True, timeout=900)
  if done.returncode:
    return f"A snippet of {name} failed:\n{done.stdout[-1500:]}\n{done.stderr[-4000:]}"
  return None


@pytest.fixture(scope="session")
def run_cache(tmp_path_factory):
  """Where the run folders that snippets read are made: shared by the xdist workers of one
  session (their temporary folders have one parent), private to the session otherwise."""
  base = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    base = base.parent
  cache = os.path.join(str(base), "snippet_runs")
  os.makedirs(os.path.join(cache, "runs"), exist_ok=True)
  return cache


@pytest.mark.parametrize("page", python_pages(), ids=lambda p: os.path.relpath(p, REPO))
def test_snippets_run_as_printed(page, tmp_path, run_cache):
  """One test per page (pages run in parallel under xdist); a run folder that two pages read
  is made once."""
  failure = run_page(page, str(tmp_path / "page"), run_cache)
  assert not failure, failure
