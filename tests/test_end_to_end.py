"""One gin file of each domain runs end to end (tiny bindings, every stage): the sinusoid and
glyphs here in the default tier, LEO and meta-RL in tests/test_end_to_end_slow.py (for the
default tier's time); tests/test_gin_files_*.py run every other file in the slow tier
(tests/end_to_end.py)."""

from tests import end_to_end
from tests.end_to_end import DEFAULT_TIER_FILES


def test_sinusoid_file_runs_end_to_end(tmp_path):
  end_to_end.check_sinusoid_file(DEFAULT_TIER_FILES["sinusoid"], str(tmp_path / "run"))


def test_glyph_file_runs_end_to_end(tmp_path):
  end_to_end.check_glyph_file(DEFAULT_TIER_FILES["glyphs"], str(tmp_path / "run"),
                              str(tmp_path / "glyphs"))
