"""The README and docs/ pages point only at things that exist.

Checked in README.md and docs/*.md:
  * every markdown link or image whose target is a relative path names an existing file or
    folder, and an anchor into a markdown page names one of its headings;
  * every gin file named in backticks (inline code or a code block), with `{a,b}` lists,
    `{1..6}` ranges and `*` wildcards expanded, exists: each expansion for lists and ranges,
    at least one match for a wildcard.
"""

import glob
import itertools
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIN_PARENT = os.path.join(REPO, "l2f_tf")  # the docs name gin files gin/... as --gin_file does
PAGES = ["README.md"] + sorted(
    os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md")))
# Pages another branch is writing, linked already: a link to one passes while it is missing, and
# is checked like any other once it exists. Remove an entry once its page is merged.
PENDING_PAGES = {"docs/api.md"}
# Gin paths the docs misspell on purpose (the error a user sees for a missing file).
DELIBERATELY_MISSING = {"gin/sinusoid/maml_5shto.gin"}

_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_GIN_PATH = re.compile(r"gin/[A-Za-z0-9_{}.,*/-]*?\.gin\b")
_BRACES = re.compile(r"\{([^{}]*)\}")


def _read(page):
  with open(os.path.join(REPO, page), encoding="utf-8") as f:
    return f.read()


def _prose(text):
  """The text without code blocks and inline code (links there are not links)."""
  return _INLINE_CODE.sub("", _FENCE.sub("", text))


def _code(text):
  """The code blocks and inline code spans of a page."""
  return [m.group(0) for m in _FENCE.finditer(text)] + _INLINE_CODE.findall(_FENCE.sub("", text))


def _slug(heading):
  """GitHub's anchor of a heading."""
  text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
  return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page_path):
  text = _FENCE.sub("", _read(page_path))
  return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.*)$", text, re.M)}


def expand_braces(pattern):
  """`{a,b}` lists and `{1..6}` ranges, expanded (a brace without either stays literal)."""
  parts, choices, last = [], [], 0
  for match in _BRACES.finditer(pattern):
    body = match.group(1)
    range_match = re.fullmatch(r"(-?\d+)\.\.(-?\d+)", body)
    if range_match:
      low, high = int(range_match.group(1)), int(range_match.group(2))
      options = [str(i) for i in range(low, high + 1)]
    elif "," in body:
      options = body.split(",")
    else:
      continue
    parts.append(pattern[last:match.start()])
    choices.append(options)
    last = match.end()
  if not choices:
    return [pattern]
  parts.append(pattern[last:])
  expanded = []
  for combination in itertools.product(*choices):
    expanded.append("".join(p + c for p, c in zip(parts, combination)) + parts[-1])
  return expanded


def test_expand_braces():
  assert expand_braces("gin/{a,b}_{1..3}.gin") == [
      "gin/a_1.gin", "gin/a_2.gin", "gin/a_3.gin", "gin/b_1.gin", "gin/b_2.gin", "gin/b_3.gin"]
  assert expand_braces("{split}_x.pkl") == ["{split}_x.pkl"]


def _link_problems(page):
  problems = []
  folder = os.path.dirname(os.path.join(REPO, page))
  for target in _LINK.findall(_prose(_read(page))):
    if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
      continue  # a URL (http:, mailto:) or an anchor in the page itself
    path, _, anchor = target.partition("#")
    full = os.path.normpath(os.path.join(folder, path))
    relative = os.path.relpath(full, REPO)
    if relative in PENDING_PAGES and not os.path.exists(full):
      continue
    if not os.path.exists(full):
      problems.append(f"{page}: link to {target}: {relative} does not exist")
    elif anchor and full.endswith(".md") and anchor not in _anchors(relative):
      problems.append(f"{page}: link to {target}: no heading with anchor #{anchor}")
  return problems


def _gin_problems(page):
  problems = []
  for code in _code(_read(page)):
    for mention in _GIN_PATH.findall(code):
      for path in expand_braces(mention):
        if path in DELIBERATELY_MISSING:
          continue
        found = glob.glob(os.path.join(GIN_PARENT, path)) if "*" in path else (
            [path] if os.path.isfile(os.path.join(GIN_PARENT, path)) else [])
        if not found:
          problems.append(f"{page}: `{mention}`: {path} does not exist")
  return problems


@pytest.mark.parametrize("page", PAGES)
def test_links_resolve(page):
  assert _link_problems(page) == []


@pytest.mark.parametrize("page", PAGES)
def test_gin_paths_exist(page):
  assert _gin_problems(page) == []

