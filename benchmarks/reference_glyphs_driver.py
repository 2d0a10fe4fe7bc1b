"""Trains and tests the authors' PyTorch MAML / L2F (baiksung/L2F) on glyphs; run by glyphs_seeds.py.

  <scratch>/venv/bin/python benchmarks/reference_glyphs_driver.py --source=<scratch>/src \\
      --data=<glyphs root> --work_dir=<folder> --learner=maml --shots=1 --seed=0

This file is ours: it only imports the authors' modules from ``--source`` (a copy made by
``benchmarks/vision_step.py --reference_setup`` outside the repository) and drives their
``ExperimentBuilder``. Their configuration starts from their miniImageNet JSON file for the
same learner (MAML: 5-way 1-shot, meta-batch 4; L2F: attenuation on) and takes l2f_tf's glyphs
protocol (``l2f_tf/gin/glyphs/setup.gin``) where the two differ:

- 28x28x1 images scaled to [0, 1] from the glyphs folders (``<data>/{train,val,test}/<class>/``,
  the layout their ``sets_are_pre_split`` reader walks), no augmentation, conv4 with 32 filters,
  5 queries per class, meta-batch 4 at 1 shot and 2 at 5 shots;
- 1,000 meta-iterations as 4 epochs of 250 (they validate once per epoch, l2f_tf every 250),
  validation on 200 episodes, test on 600;
- first order for the first 300 meta-iterations (their switch is per epoch; here it is per
  meta-iteration, as l2f_tf's ``Trainer.first_order_until``).

Everything else is theirs: initialisation, inner loop (5 steps at 0.01, second order), Adam
1e-3 with their cosine schedule (from 1e-3 to a minimum of 1e-3), batch norm, L2F's attenuator,
their episode sampler and seeds (``--seed`` seeds the
weights and the training episodes; the validation and test episodes come from a fixed seed,
as in l2f_tf), and the selection of the 3 best validated checkpoints for the test. Their
element-wise clip of the meta-gradient to [-10, 10] applies only to datasets whose name holds
"imagenet", so these runs do not clip (l2f_tf's glyphs protocol does).

Their checkpoints are loaded with ``torch.load(weights_only=False)`` (the torch of this venv
refuses their numpy scalars otherwise). Their data module imports torchvision for its transforms; torchvision's PyPI wheels do not load
beside this torch, so a stand-in module with the one transform the glyphs path uses
(``ToTensor`` of a float array: a channels-first tensor, values unchanged) is registered first.

Writes ``<work_dir>/<experiment>/results.json``: test accuracy per episode of the best
validated checkpoint and of the top-3 ensemble (averaged logits, their protocol), with the
validation history. Their own checkpoints and logs stay beside it; a run that is stopped
resumes from its last epoch (their ``continue_from_epoch = 'latest'``).
"""

import argparse
import contextlib
import io
import json
import math
import os
import sys
import time
import types
import warnings

import reference_step_driver  # Its configuration builder; this script's folder is on sys.path.

CONFIGS = {  # --learner: the authors' miniImageNet JSON files (conv4)
    "maml": "experiment_config/mini-imagenet_maml_mini-imagenet_5_way_1_shot_0.json",
    "l2f": "experiment_config/mini-imagenet_l2f_mini-imagenet_5_way_5_shot_0.json",
}
DATASET = "glyphs"  # neither 'omniglot' (rotations) nor 'imagenet' (RGB, ImageNet statistics)


def install_torchvision_stand_in() -> None:
  """A ``torchvision.transforms`` module with ``ToTensor`` (numpy HWC float -> CHW tensor)."""
  import numpy as np
  import torch

  class ToTensor:
    def __call__(self, image):
      return torch.from_numpy(np.ascontiguousarray(np.transpose(image, (2, 0, 1))))

  transforms = types.ModuleType("torchvision.transforms")
  transforms.ToTensor = ToTensor
  package = types.ModuleType("torchvision")
  package.transforms = transforms
  sys.modules.setdefault("torchvision", package)
  sys.modules.setdefault("torchvision.transforms", transforms)


def glyphs_args(source: str, learner: str, shots: int, seed: int, iterations: int,
                validate_every: int, val_episodes: int, test_episodes: int, workers: int):
  """Their configuration object, built as their training script builds it, then set to the
  glyphs protocol (module docstring)."""
  args = reference_step_driver.their_args(os.path.join(source, CONFIGS[learner]))
  if iterations % validate_every:
    raise SystemExit(f"--iterations ({iterations}) must be a multiple of --validate_every "
                     f"({validate_every}): their code validates at the end of each epoch.")
  settings = dict(
      use_cuda=False, dataset_name=DATASET, dataset_path=os.path.join(os.environ["DATASET_DIR"],
                                                                      DATASET),
      image_height=28, image_width=28, image_channels=1, cnn_num_filters=32,
      num_classes_per_set=5, num_samples_per_class=shots, num_target_samples=5,
      batch_size=4 if shots == 1 else 2, load_into_memory=True, reset_stored_filepaths=False,
      sets_are_pre_split=True, indexes_of_folders_indicating_class=[-3, -2],
      total_iter_per_epoch=validate_every, total_epochs=iterations // validate_every,
      total_epochs_before_pause=10 ** 6, num_evaluation_tasks=test_episodes,
      num_dataprovider_workers=workers, seed=seed, train_seed=seed, val_seed=0,
      attenuate=learner == "l2f", experiment_name=f"glyphs_{learner}_{shots}shot_seed{seed}",
      continue_from_epoch="latest", evaluate_on_test_set_only=False)
  for key, value in settings.items():
    setattr(args, key, value)
  args.val_episodes = val_episodes
  return args


def load_glyph(self, image_path, channels):
  """Their ``load_image`` for 28x28 grayscale PNGs: float32 HxWx1 in [0, 1], as l2f_tf's
  ``normalization = "unit"`` (their non-Omniglot path would convert to RGB)."""
  import numpy as np
  from PIL import Image
  if self.data_loaded_in_memory:
    return image_path
  with Image.open(image_path) as image:
    pixels = np.asarray(image.convert("L").resize((self.image_width, self.image_height)),
                        dtype=np.float32) / 255.0
  return pixels[:, :, None]


def patched_classes(first_order_until: int):
  """Their data loader, classifier and experiment builder with the glyphs protocol's
  differences (module docstring) as subclass overrides; their modules stay unmodified."""
  import numpy as np
  import data as their_data  # the authors' modules
  from experiment_builder import ExperimentBuilder
  from few_shot_learning_system import MAMLFewShotClassifier

  to_tensor = sys.modules["torchvision.transforms"].ToTensor()  # the stand-in
  their_data.get_transforms_for_dataset = lambda dataset_name, args, k: ([to_tensor],
                                                                           [to_tensor])
  their_data.FewShotLearningDatasetParallel.load_image = load_glyph
  # Their checkpoints hold numpy scalars, which torch >= 2.6 refuses to unpickle by default;
  # the files are this run's own.
  import torch
  torch_load = torch.load
  torch.load = lambda *args, **kwargs: torch_load(*args, **{"weights_only": False, **kwargs})

  class Loader(their_data.MetaLearningSystemDataLoader):
    def get_val_batches(self, total_batches=-1, augment_images=False):
      return super().get_val_batches(self.args.val_episodes // self.args.batch_size,
                                     augment_images)

  class Classifier(MAMLFewShotClassifier):
    iteration = 0

    def run_train_iter(self, data_batch, epoch):
      # ExperimentBuilder passes current_iter / total_iter_per_epoch.
      self.iteration = int(round(epoch * self.args.total_iter_per_epoch))
      return super().run_train_iter(data_batch, epoch)

    def train_forward_prop(self, data_batch, epoch):
      return self.forward(data_batch=data_batch, epoch=epoch,
                          use_second_order=bool(self.args.second_order
                                                and self.iteration >= first_order_until),
                          use_multi_step_loss_optimization=(
                              self.args.use_multi_step_loss_optimization),
                          num_steps=self.args.number_of_training_steps_per_iter,
                          training_phase=True)

  class Builder(ExperimentBuilder):
    def evaluated_test_set_using_the_best_models(self, top_n_models):
      """Their test (the ``top_n_models`` best validated epochs, logits averaged), keeping
      every episode's accuracy for the best checkpoint alone and for the ensemble."""
      history = np.asarray(self.state["per_epoch_statistics"]["val_accuracy_mean"])
      ranked = np.argsort(history, axis=0).astype(np.int32)[::-1][:top_n_models]  # as theirs
      logits, targets = [], None
      for epoch in ranked:
        with contextlib.redirect_stdout(io.StringIO()):
          self.model.load_model(model_save_dir=self.saved_models_filepath,
                                model_name="train_model", model_idx=int(epoch) + 1)
        model_logits, model_targets = [], []
        batches = self.args.num_evaluation_tasks // self.args.batch_size
        for sample in self.data.get_test_batches(total_batches=batches, augment_images=False):
          support_x, query_x, support_y, query_y, _ = sample
          _, per_task = self.model.run_validation_iter(
              data_batch=(support_x, query_x, support_y, query_y))
          model_logits.extend(np.asarray(task) for task in per_task)
          model_targets.extend(np.asarray(query_y).reshape(len(per_task), -1))
        logits.append(np.stack(model_logits))
        targets = np.stack(model_targets) if targets is None else targets
      best = np.mean(np.argmax(logits[0], -1) == targets, axis=1)
      ensemble = np.mean(np.argmax(np.mean(logits, axis=0), -1) == targets, axis=1)
      self.test_results = {
          "best": best.tolist(), "ensemble": ensemble.tolist(),
          "validation": {str((int(e) + 1) * self.args.total_iter_per_epoch): float(a)
                         for e, a in enumerate(history)},
          "ensembled_iterations": [(int(e) + 1) * self.args.total_iter_per_epoch
                                   for e in ranked]}

  return Loader, Classifier, Builder


def summary(values) -> dict:
  n = len(values)
  mean = sum(values) / n
  std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
  return {"mean": mean, "ci95": 1.96 * std / math.sqrt(n), "n": n}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--source", required=True, help="Folder holding the authors' code.")
  parser.add_argument("--data", required=True,
                      help="The glyphs dataset's root (its train/, val/ and test/ folders).")
  parser.add_argument("--work_dir", required=True,
                      help="Where their experiment folder and the path lists go.")
  parser.add_argument("--learner", choices=sorted(CONFIGS), default="maml")
  parser.add_argument("--shots", type=int, choices=(1, 5), default=1)
  parser.add_argument("--seed", type=int, default=0, help="Weights and training episodes.")
  parser.add_argument("--iterations", type=int, default=1000)
  parser.add_argument("--validate_every", type=int, default=250)
  parser.add_argument("--first_order_until", type=int, default=300)
  parser.add_argument("--val_episodes", type=int, default=200)
  parser.add_argument("--test_episodes", type=int, default=600)
  parser.add_argument("--workers", type=int, default=1, help="Their data-loader processes.")
  parser.add_argument("--threads", type=int, default=0,
                      help="torch.set_num_threads; 0 = the logical CPUs this process may use.")
  flags = parser.parse_args()

  warnings.filterwarnings("ignore")  # their scheduler calls are deprecated in recent torch
  for split in ("train", "val", "test"):
    if not os.path.isdir(os.path.join(flags.data, split)):
      raise SystemExit(f"--data={flags.data} has no {split}/ folder: pass the glyphs root "
                       "(l2f_tf.data.glyphs.ensure_glyphs() returns it).")
  import torch
  torch.set_num_threads(flags.threads or len(os.sched_getaffinity(0)))
  install_torchvision_stand_in()
  sys.path.insert(0, os.path.abspath(flags.source))
  os.makedirs(flags.work_dir, exist_ok=True)
  os.chdir(flags.work_dir)  # their experiment folder is relative to the working directory
  os.environ["DATASET_DIR"] = os.path.abspath(".")  # their path lists are written here
  link = os.path.join(os.environ["DATASET_DIR"], DATASET)
  if not os.path.exists(link):
    os.symlink(os.path.abspath(flags.data), link)

  args = glyphs_args(os.path.abspath(flags.source), flags.learner, flags.shots, flags.seed,
                     flags.iterations, flags.validate_every, flags.val_episodes,
                     flags.test_episodes, flags.workers)
  Loader, Classifier, Builder = patched_classes(flags.first_order_until)
  start = time.time()
  with contextlib.redirect_stdout(sys.stderr):  # their progress bars and prints
    model = Classifier(args=args, device=torch.device("cpu"),
                       im_shape=(2, args.image_channels, args.image_height, args.image_width))
    builder = Builder(model=model, data=Loader, args=args, device=torch.device("cpu"))
    builder.run_experiment()
  results = builder.test_results
  results.update({
      "implementation": "baiksung/L2F (PyTorch)", "learner": flags.learner,
      "shots": flags.shots, "seed": flags.seed, "iterations": flags.iterations,
      "seconds": time.time() - start, "torch": torch.__version__,
      "test_best": summary(results["best"]), "test_ensemble": summary(results["ensemble"])})
  path = os.path.join(args.experiment_name, "results.json")
  with open(path + ".tmp", "w") as f:
    json.dump(results, f)
  os.replace(path + ".tmp", path)
  print(json.dumps({key: results[key] for key in
                    ("learner", "shots", "seed", "test_best", "test_ensemble", "seconds")}))


if __name__ == "__main__":
  main()
