"""Writes image embeddings in LEO's format from any image dataset the library reads
(`l2f_tf.train.pretrain`: a backbone pretrained on the train classes, then its features).

  python -m l2f_tf.embed --image_root=/data/glyphs --dataset_name=glyphs --out=/data/emb \
      --backbone=conv4 --filters=64 --image_size=28 --channels=1 --normalization=unit \
      --epochs=6 --lr=0.002 --seed=0
"""

from l2f_tf import console  # Imports l2f_tf first, which sets TF_USE_LEGACY_KERAS.

if __name__ == "__main__":
  console.quiet_third_party()  # Before TensorFlow is imported; --third_party_logs: off.

import functools
import json
import sys

from absl import app, flags

from l2f_tf.data import episodic
from l2f_tf.models.conv4 import conv4
from l2f_tf.train import pretrain

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line's flags, defined only when this module runs as a program."""
  flags.DEFINE_string("image_root", None, "An image dataset (any layout l2f_tf reads).")
  flags.DEFINE_string("dataset_name", None, "Folder name of the embeddings under --out, e.g. "
                      "glyphs (FewShotEmbeddings.dataset).")
  flags.DEFINE_string("out", None, "Root of the embeddings (FewShotEmbeddings.root).")
  flags.DEFINE_enum("backbone", "conv4", sorted(pretrain.BACKBONES), "The backbone to pretrain.")
  flags.DEFINE_integer("filters", 64, "conv4's filters (ignored for resnet12).")
  flags.DEFINE_integer("image_size", 84, "Images are resized to this side.")
  flags.DEFINE_integer("channels", None, "1 or 3 (default: the format's).")
  flags.DEFINE_enum("normalization", "imagenet", list(episodic.NORMALIZATIONS),
                    "Pixel normalisation.")
  flags.DEFINE_integer("epochs", 10, "Pretraining epochs over the train split.")
  flags.DEFINE_integer("batch_size", 64, "Images per pretraining step.")
  flags.DEFINE_float("lr", 1e-3, "Adam's learning rate.")
  flags.DEFINE_integer("seed", 0, "Seeds the initial weights and the batch order.")


def main(argv):
  del argv
  for name in ("image_root", "dataset_name", "out"):
    if not getattr(FLAGS, name):
      raise app.UsageError(f"--{name} is required.")
  backbone_fn = pretrain.BACKBONES[FLAGS.backbone]
  if FLAGS.backbone == "conv4":
    backbone_fn = functools.partial(conv4, filters=FLAGS.filters)
  try:
    backbone = pretrain.make_embeddings(FLAGS.image_root, FLAGS.out, FLAGS.dataset_name,
                                        FLAGS.image_size, FLAGS.channels, FLAGS.normalization,
                                        backbone_fn, FLAGS.epochs, FLAGS.batch_size, FLAGS.lr,
                                        FLAGS.seed)
  except ValueError as error:  # A mistake of the user's: the message names the fix.
    sys.exit(f"embed: {error}")
  print(json.dumps({"root": FLAGS.out, "dataset": FLAGS.dataset_name,
                    "train_accuracy": backbone.train_accuracy,
                    "pretraining_seconds": round(backbone.seconds, 1)}, indent=2))


if __name__ == "__main__":
  define_flags()
  console.define_flag()
  app.run(main)
