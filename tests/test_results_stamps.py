"""Measured figures in the README and docs/ name the commit that measured them, and that commit
is in this project's history. A results table that a documented command regenerates carries a
marker (an HTML comment, invisible on the page)::

  <!-- results: commit 75df77a; files: l2f_tf/gin/glyphs benchmarks/glyphs_seeds.py -->

and the files it lists (the gin files and scripts that made it) must be as they were at that
commit: change one and this test names the table to regenerate with its command
(docs/testing.md, "Results tables"). The package's other code changes all the time; its effect
on a table is what regenerating it measures.
"""

import glob
import os
import re
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# "commit 1a2b3c4" or "at 1a2b3c4" (7-12 hex digits); the authors' commits are another repo's.
STAMP = re.compile(r"(?<!authors' )\b(?:commit|at) ([0-9a-f]{7,12})\b")
MARKER = re.compile(r"<!-- results: commit ([0-9a-f]{7,40}); files: ([^>]*?) -->")


def pages():
  return [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs",
                                                                          "*.md")))


def git(*args):
  return subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def history():
  shallow = git("rev-parse", "--is-shallow-repository")
  if shallow.returncode:
    pytest.skip("not a git checkout: no history to check the stamps against")
  if shallow.stdout.strip() == "true":
    pytest.skip("a shallow clone: its history lacks the commits the docs name "
                "(git fetch --unshallow)")


def stamps(text):
  """(line number, commit) of every commit stamp of a page's text, markers included."""
  return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in STAMP.finditer(text)]


def test_the_patterns_find_stamps_and_markers():
  text = ("took 16 min (at commit 9eb92ef, idle)\nthe authors' commit 72665260\n"
          "trained at c4ab170 and at\n<!-- results: commit 75df77a; files: a/b c.py -->")
  assert stamps(text) == [(1, "9eb92ef"), (3, "c4ab170"), (4, "75df77a")]
  assert MARKER.findall(text) == [("75df77a", "a/b c.py")]


def test_every_stamped_commit_is_in_this_projects_history(history):
  wrong = []
  for page in pages():
    with open(page) as f:
      for line, commit in stamps(f.read()):
        if git("merge-base", "--is-ancestor", commit, "HEAD").returncode:
          wrong.append(f"{os.path.relpath(page, REPO)}:{line}: {commit}")
  assert not wrong, ("Commits named as where figures were measured that are not ancestors of "
                     "HEAD (a typo, or a commit that never landed): " + ", ".join(wrong))


def test_a_marked_table_was_made_with_the_files_as_they_are(history):
  marked, stale = 0, []
  for page in pages():
    with open(page) as f:
      text = f.read()
    for match in MARKER.finditer(text):
      marked += 1
      commit, files = match.group(1), match.group(2).split()
      line = text.count("\n", 0, match.start()) + 1
      missing = [p for p in files if not os.path.exists(os.path.join(REPO, p))]
      assert not missing, f"{os.path.relpath(page, REPO)}:{line}: no such file {missing}"
      if git("diff", "--quiet", commit, "--", *files).returncode:
        stale.append(f"{os.path.relpath(page, REPO)}:{line} (made at {commit}; changed since: "
                     f"{git('diff', '--name-only', commit, '--', *files).stdout.split()})")
  assert marked >= 1  # the glyphs results table at least
  assert not stale, ("Results tables made with files that changed since; regenerate them with "
                     "the command beside each (docs/testing.md, 'Results tables'): "
                     + "; ".join(stale))
