"""An unknown meta-RL environment name: one line listing the known names (and a close one)."""

import gin
import pytest

from l2f_tf.domains.meta_rl import MetaRLDomain
from l2f_tf.rl import envs
from l2f_tf.rl import sampler as sampler_lib

KNOWN = "Known environments: AntDir, AntVel, HalfCheetahDir, HalfCheetahVel, Navigation2D."


@pytest.mark.parametrize("name, expected", [
    ("HalfCheetah", "Unknown environment 'HalfCheetah': did you mean 'HalfCheetahVel' or "
     f"'HalfCheetahDir'? {KNOWN}"),
    ("navigation2d", f"Unknown environment 'navigation2d': did you mean 'Navigation2D'? {KNOWN}"),
    ("CartPole-v1", f"Unknown environment 'CartPole-v1': {KNOWN}"),
    (None, f"Unknown environment None: {KNOWN}"),
])
def test_make_env_lists_the_known_names(name, expected):
  with pytest.raises(ValueError) as error:
    envs.make_env(name)
  assert str(error.value) == expected


def test_every_entry_point_names_its_setting_before_building_anything():
  with pytest.raises(ValueError) as error:
    MetaRLDomain(env_name="AntDirection")
  assert str(error.value).startswith(
      "Unknown MetaRLDomain.env_name 'AntDirection': did you mean 'AntDir'? " + KNOWN)
  with pytest.raises(ValueError) as error:
    sampler_lib.Sampler("Navigation3D", 2, 2, 5)
  assert str(error.value) == (
      f"Unknown environment 'Navigation3D': did you mean 'Navigation2D'? {KNOWN}")


def test_a_gin_binding_with_an_unknown_name():
  gin.parse_config("MetaRLDomain.env_name = 'AntVelocity'")
  with pytest.raises(ValueError, match=r"Unknown MetaRLDomain.env_name 'AntVelocity': did you "
                     r"mean 'AntVel'\?"):
    MetaRLDomain()
