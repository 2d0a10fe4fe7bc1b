"""Seconds per LEO meta-iteration at the reference configuration, through the Trainer.

Writes synthetic embeddings in LEO's released format (640-d, miniImageNet's 64/16/20 classes
of 600 images... fewer images per class, which does not change the step) to a scratch folder,
builds the learner of a gin file (default: gin/leo/mini_imagenet_leo_l2f_5shot.gin: 5-way,
meta-batch 12, 15 queries, 5 + 5 inner steps, second order) and times the Trainer's compiled
multi-step loop after its first call. Prints the compile time, s / meta-iteration and the
projected time of LEO's 100,000 meta-iterations.

  python benchmarks/leo_step.py --gin_file=gin/leo/mini_imagenet_leo_1shot.gin --steps=200
"""

import os
import platform
import resource
import tempfile
import time

import numpy as np
from absl import app, flags

from l2f_tf.data.readers import leo_embeddings
from l2f_tf.train import restore
from l2f_tf.train.experiment import build_learner
from l2f_tf.train.trainer import Trainer

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string("gin_file", "gin/leo/mini_imagenet_leo_l2f_5shot.gin", "LEO gin file.")
  flags.DEFINE_integer("steps", 200, "Timed meta-iterations (after the first call).")
  flags.DEFINE_multi_string("gin_bindings", [], "Extra bindings, e.g. Trainer.jit_compile.")


def write_embeddings(root: str, dim: int = 640, per_class: int = 40) -> None:
  rng = np.random.default_rng(0)
  for split, classes in (("train", 64), ("val", 16), ("test", 20)):
    centers = rng.normal(size=(classes, dim))
    rows = np.repeat(centers, per_class, 0) + rng.normal(size=(classes * per_class, dim))
    wnids = [f"n{split[:2]}{c:06d}" for c in range(classes) for _ in range(per_class)]
    files = [f"{i:08d}.JPEG" for _ in range(classes) for i in range(per_class)]
    leo_embeddings.write_embedding_split(
        leo_embeddings.embedding_path(root, "miniImageNet", "center", split),
        rows.astype(np.float32), wnids, files)


def main(argv):
  del argv
  scratch = tempfile.mkdtemp()
  write_embeddings(os.path.join(scratch, "data"))
  domain = restore.parse_domain([FLAGS.gin_file], [
      f"FewShotEmbeddings.root = '{scratch}/data'", "Trainer.validate_every = 1000000",
      "Trainer.summary_every = 0", *FLAGS.gin_bindings])
  learner = build_learner(domain)
  trainer = Trainer(learner=learner, domain=domain, root_dir=os.path.join(scratch, "run"))
  start = time.perf_counter()
  trainer.run(1)  # The first call runs one step: it traces and compiles the step.
  trainer.run(2)  # Then the multi-step loop (compiled on its first call).
  compile_seconds = time.perf_counter() - start
  done, start = 0, time.perf_counter()
  while done < FLAGS.steps:
    done += trainer.run(FLAGS.steps - done).steps
  seconds = (time.perf_counter() - start) / done
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
  print(f"{FLAGS.gin_file} ({learner.method_name}, {domain.num_ways}-way {domain.num_shots}-shot,"
        f" meta-batch {domain.meta_batch_size}, {domain.embedding_dim}-d) on {platform.machine()}"
        f" with {os.cpu_count()} cores:")
  print(f"  first calls (tracing + compiling step and loop): {compile_seconds:.1f} s")
  print(f"  {seconds * 1000:.1f} ms / meta-iteration over {done} ({1 / seconds:.1f} / s); "
        f"100,000 meta-iterations: {seconds * 1e5 / 3600:.1f} h; peak RSS {peak:.2f} GB")


if __name__ == "__main__":
  define_flags()
  app.run(main)
