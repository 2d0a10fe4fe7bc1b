"""Labels one's own images with an exported few-shot image classifier.

  python -m l2f_tf.predict --saved_model=runs/glyphs_l2f_1shot --support_dir=my_classes \
      --query=my_photos --query=one_more.png --output=preds.json

``--support_dir`` holds one folder per class, named after it, each with exactly the K images
of the N-way K-shot export (labels 0..N-1 follow the sorted folder names); ``--query`` is an
image file or a folder of images (all its image files, sorted), repeatable. Every image, of any
format and size Pillow reads, is converted and resized as in training. Prints one line per
query image, ``path<TAB>class<TAB>probability`` (the softmax of the logits); ``--output``
also writes them as JSON, with the class names, the support folder and the SavedModel. Under
transductive batch norm all queries go in one call and a note on stderr says that the
predictions depend on which queries are given together. A user's mistake exits with status 1
and one line ``predict: ...`` naming the fix (`l2f_tf.export.image_folders` has the checks,
shared with ``LoadedLearner.classify``).
"""

from l2f_tf import console  # (l2f_tf is imported first: it sets TF_USE_LEGACY_KERAS)

if __name__ == "__main__":
  console.quiet_third_party()  # Before TensorFlow is imported; --third_party_logs: off.

import sys
from typing import Dict, List

from absl import app, flags, logging

from l2f_tf import atomic, export
from l2f_tf.export import image_folders

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line (defined only when run, so that importing this module defines no flag)."""
  flags.DEFINE_string("saved_model", None, "A run folder, or its saved_model/ directory.")
  flags.DEFINE_string("support_dir", None, "A folder of class folders (the class names), each "
                      "holding the K images of the export's N-way K-shot task.")
  flags.DEFINE_multi_string("query", [], "An image file or a folder of images to label "
                            "(repeatable).")
  flags.DEFINE_string("output", None, "Optional JSON output path.")
  flags.DEFINE_integer("batch_size", 100, "Queries per SavedModel call in the inductive "
                       "batch-norm modes (transductive: all in one call).")


def report(loaded, support_dir: str, predictions: List[Dict]) -> Dict:
  """What ``--output`` writes: the SavedModel, its batch-norm mode, the support folder, the
  class names (label order) and the predictions."""
  num_classes, num_shots = image_folders.image_task(loaded)[:2]
  return {"saved_model": loaded.path, "batch_norm": loaded.batch_norm,
          "support_dir": support_dir,
          "classes": image_folders.class_names(support_dir, num_classes, num_shots),
          "predictions": predictions}


def prediction_lines(predictions: List[Dict]) -> List[str]:
  """One line per query: ``path<TAB>class<TAB>probability``."""
  return [f"{p['path']}\t{p['class']}\t{p['probability']:.4f}" for p in predictions]


def main(argv):
  del argv
  if not (FLAGS.saved_model and FLAGS.support_dir and FLAGS.query):
    raise app.UsageError("--saved_model, --support_dir and --query are required (a run folder, "
                         "a folder of class folders, images to label).")
  try:
    loaded = export.load(FLAGS.saved_model)
    predictions = image_folders.classify(loaded, FLAGS.support_dir, FLAGS.query,
                                         FLAGS.batch_size)
  except ValueError as error:  # A mistake of the user's: the message names the fix.
    sys.exit(f"predict: {error}")
  if image_folders.depends_on_other_queries(loaded):
    print(f"predict: note: {image_folders.TRANSDUCTIVE_NOTE}", file=sys.stderr)
  print("\n".join(prediction_lines(predictions)))
  if FLAGS.output:
    logging.info("Wrote %s", atomic.write_json(FLAGS.output,
                                               report(loaded, FLAGS.support_dir, predictions)))


if __name__ == "__main__":
  define_flags()
  console.define_flag()
  app.run(main)
