"""Times the authors' PyTorch L2F (baiksung/L2F) on one random meta-batch; run by vision_step.py.

  <scratch>/venv/bin/python benchmarks/reference_step_driver.py --source=<scratch>/src

This file is ours: it only imports the authors' modules from ``--source`` (a copy made by
``benchmarks/vision_step.py --compare_reference`` outside the repository) and calls them. Their
configuration object is built the way their training script builds it, from their JSON
config for miniImageNet, L2F, 5-way 5-shot: conv4 with 48 filters and meta-batch 2 (the
default), or ResNet12 with meta-batch 1 (``--config=resnet12``); 5 inner steps, second order,
attenuation on, Adam, gradients clipped to [-10, 10]. Only the number of inner steps
(``--inner_steps``) and the image size (smoke runs) may be overridden. Their training
iteration (``run_train_iter``) is called with an
epoch past their first-order warm-up epochs so that it differentiates through the inner loop
(second order). The images are random: the cost does not depend on their content.

Prints one JSON line: median/min/max seconds per meta-iteration, peak RSS and the thread
settings. Runs under the scratch venv's Python (torch, numpy, tqdm; no TensorFlow).
"""

import argparse
import contextlib
import io
import json
import os
import resource
import statistics
import sys
import time
import warnings

CONFIGS = {  # --config: the authors' JSON files for L2F, miniImageNet, 5-way 5-shot
    "conv4": "experiment_config/mini-imagenet_l2f_mini-imagenet_5_way_5_shot_0.json",
    "resnet12": "experiment_config/mini-imagenet_l2f_mini-imagenet_5_way_5_shot_0_resnet12.json",
}


def their_args(json_path: str):
  """Their configuration object, built as their training script builds it from one of their
  JSON files (their modules must be importable; ``DATASET_DIR`` is only joined, never read)."""
  from utils.parser_utils import get_args  # the authors' module
  saved_argv = sys.argv
  sys.argv = [saved_argv[0], "--name_of_args_json_file", json_path]
  try:
    with contextlib.redirect_stdout(io.StringIO()):  # they print every setting
      args, _ = get_args()
  finally:
    sys.argv = saved_argv
  return args


def build_system(source: str, size: int, config: str = "conv4", inner_steps: int = 0):
  """The authors' MAMLFewShotClassifier on the CPU, configured from their JSON file; with
  ``inner_steps`` > 0, that many inner steps instead of the file's (their per-step learning
  rates and loss weights are sized from it when the system is built)."""
  import torch
  sys.path.insert(0, source)
  from few_shot_learning_system import MAMLFewShotClassifier  # the authors' module

  os.environ.setdefault("DATASET_DIR", os.path.join(source, "no_data"))  # only joined, never read
  args = their_args(os.path.join(source, CONFIGS[config]))
  args.use_cuda = False
  args.image_height = args.image_width = size
  if inner_steps:
    args.number_of_training_steps_per_iter = inner_steps
  device = torch.device("cpu")
  with contextlib.redirect_stdout(io.StringIO()):  # and every parameter shape
    system = MAMLFewShotClassifier(
        im_shape=(2, args.image_channels, args.image_height, args.image_width),
        device=device, args=args)
  return system, args


def random_batch(args, rng):
  """One meta-batch in their layout: images (tasks, classes, per class, channels, h, w), labels
  (tasks, classes, per class)."""
  import numpy as np
  ways, shots, queries = (args.num_classes_per_set, args.num_samples_per_class,
                          args.num_target_samples)
  image = (args.image_channels, args.image_height, args.image_width)

  def images(per_class):
    return rng.normal(size=(args.batch_size, ways, per_class) + image).astype(np.float32)

  def labels(per_class):
    return np.broadcast_to(np.arange(ways)[None, :, None],
                           (args.batch_size, ways, per_class)).copy()

  return images(shots), images(queries), labels(shots), labels(queries)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--source", required=True, help="Folder holding the authors' code.")
  parser.add_argument("--repeats", type=int, default=5, help="Timed meta-iterations.")
  parser.add_argument("--warmup", type=int, default=2, help="Untimed meta-iterations first.")
  parser.add_argument("--threads", type=int, default=0,
                      help="torch.set_num_threads; 0 = the logical CPUs this process may use.")
  parser.add_argument("--size", type=int, default=84, help="Image height and width.")
  parser.add_argument("--config", choices=sorted(CONFIGS), default="conv4",
                      help="Which of the authors' 5-way 5-shot L2F configurations.")
  parser.add_argument("--inner_steps", type=int, default=0,
                      help="Inner steps per task; 0 = the configuration's (5).")
  flags = parser.parse_args()

  warnings.filterwarnings("ignore")  # their scheduler calls are deprecated in recent torch
  import numpy as np
  import torch

  threads = flags.threads or len(os.sched_getaffinity(0))
  torch.set_num_threads(threads)
  system, args = build_system(flags.source, flags.size, flags.config, flags.inner_steps)
  epoch = args.first_order_to_second_order_epoch + 1
  second_order = bool(args.second_order and epoch > args.first_order_to_second_order_epoch)
  batch = random_batch(args, np.random.default_rng(0))
  times = []
  for i in range(flags.warmup + flags.repeats):
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
      losses, _ = system.run_train_iter(data_batch=batch, epoch=epoch)
    float(losses["loss"])
    if i >= flags.warmup:
      times.append(time.perf_counter() - start)
  print(json.dumps({
      "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
      "times": times, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
      "torch_interop_threads": torch.get_num_interop_threads(), "threads_set": threads,
      "second_order": second_order, "filters": args.cnn_num_filters,
      "inner_steps": args.number_of_training_steps_per_iter, "attenuate": bool(args.attenuate),
      "meta_batch": args.batch_size, "ways": args.num_classes_per_set,
      "shots": args.num_samples_per_class, "queries": args.num_target_samples,
      "size": args.image_height, "architecture": args.architecture}))


if __name__ == "__main__":
  main()
