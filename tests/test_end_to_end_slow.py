"""LEO's and meta-RL's default gin files end to end (tests/test_end_to_end.py runs the other
domains' in the default tier)."""

import pytest

from tests import end_to_end
from tests.end_to_end import DEFAULT_TIER_FILES

pytestmark = pytest.mark.slow


def test_leo_glyph_file_runs_end_to_end(tmp_path):
  end_to_end.check_leo_glyph_file(DEFAULT_TIER_FILES["leo"], str(tmp_path / "run"),
                                  str(tmp_path / "glyphs"))


def test_rl_file_runs_end_to_end(tmp_path):
  end_to_end.check_rl_file(DEFAULT_TIER_FILES["rl"], str(tmp_path / "run"))
