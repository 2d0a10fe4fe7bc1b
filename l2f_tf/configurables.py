"""Imports every module that registers gin configurables, so any gin file can be parsed."""

# pylint: disable=unused-import
import gin

from l2f_tf import embed  # noqa: F401
from l2f_tf.data import glyphs, sinusoid_tasks  # noqa: F401
from l2f_tf.domains import embeddings, few_shot, meta_rl, sinusoid  # noqa: F401
from l2f_tf.meta import attenuation, learner, leo  # noqa: F401
from l2f_tf.models import conv4, gaussian_policy, leo_network, linear, mlp, resnet12  # noqa: F401
from l2f_tf.train import experiment, guard, meta_rl_trainer, runner, trainer  # noqa: F401

# The embedded dataset's generator, for gin: FewShotClassification.root = @ensure_glyphs().
gin.external_configurable(glyphs.ensure_glyphs, "ensure_glyphs")
# Glyph embeddings for LEO: FewShotEmbeddings.root = @ensure_glyph_embeddings().
gin.external_configurable(embed.ensure_glyph_embeddings, "ensure_glyph_embeddings")
