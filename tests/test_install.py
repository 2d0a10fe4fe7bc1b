"""An ordinary (non-editable) install runs the experiments by their documented names.

Slow tier (pip and a fresh process: ~15-50 s): installs the package with pip into a temporary
folder and runs ``python -m l2f_tf --gin_file=gin/sinusoid/quick.gin`` from another one, in smoke
mode, as on a default install: the modules of the ``rl`` extra are blocked (a sitecustomize puts
None in sys.modules for them). The installed metadata puts meta-RL's packages in that extra.
``python -m l2f_tf.predict`` runs there too: on the run's sinusoid export, which it refuses in
one line (labelling images needs an image classifier), and on a tiny 2-way 1-shot conv4 (support
batch norm) exported by the installed package, which labels a folder of PNG and JPEG images.
"""

import email
import glob
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RL_PACKAGES = {"tf-agents", "tensorflow-probability", "gymnasium", "tf-keras"}
BLOCK_RL = ("import sys\n"
            "for name in ('tf_agents', 'gymnasium', 'gym', 'mujoco', 'tensorflow_probability', "
            "'tf_keras', 'pygame'):\n"
            "  sys.modules[name] = None\n")


def test_installed_package_runs_a_gin_file_by_name_from_any_directory(tmp_path):
  source = tmp_path / "source"  # A copy: pip builds in the tree it is given.
  shutil.copytree(os.path.join(REPO, "l2f_tf"), source / "l2f_tf",
                  ignore=shutil.ignore_patterns("__pycache__"))
  for name in ("setup.cfg", "pyproject.toml", "README.md"):
    shutil.copy(os.path.join(REPO, name), source / name)
  site = tmp_path / "site"
  subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                  "--no-build-isolation", "--target", str(site), str(source)],
                 check=True, capture_output=True)
  def gin_files(root):
    return sorted(os.path.relpath(p, root) for p in glob.glob(
        os.path.join(root, "l2f_tf", "gin", "**", "*.gin"), recursive=True))
  assert gin_files(site) == gin_files(REPO)  # Every gin file is package data.
  metadata, = glob.glob(os.path.join(site, "l2f_tf-*.dist-info", "METADATA"))
  with open(metadata) as f:
    requires = email.message_from_file(f).get_all("Requires-Dist")
  name = lambda requirement: requirement.split(";")[0].split("[")[0].split("=")[0].strip()
  default = {name(r) for r in requires if ";" not in r}
  rl = {name(r) for r in requires if r.replace("'", '"').endswith('extra == "rl"')}
  assert rl == RL_PACKAGES and not default & RL_PACKAGES and "tensorflow" in default
  blocker = tmp_path / "default_install"  # No rl extra: its modules cannot be imported.
  blocker.mkdir()
  (blocker / "sitecustomize.py").write_text(BLOCK_RL)
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker), str(site)]),
             L2F_TF_SMOKE="1")
  found = subprocess.run(
      [sys.executable, "-c", "import l2f_tf.config as c; print(c.__file__); "
       "print(c.resolve_gin_file('sinusoid/quick.gin'))"],
      cwd=elsewhere, env=env, check=True, capture_output=True, text=True).stdout.split()
  assert all(path.startswith(str(site)) for path in found), found
  root = tmp_path / "run"
  run = subprocess.run([sys.executable, "-m", "l2f_tf", "--gin_file=gin/sinusoid/quick.gin",
                        f"--root_dir={root}", "--gin_bindings=Trainer.num_iterations = 2"],
                       cwd=elsewhere, env=env, capture_output=True, text=True)
  assert run.returncode == 0, run.stderr[-3000:]
  assert os.path.isfile(root / "results.json")
  predict = subprocess.run([sys.executable, "-m", "l2f_tf.predict", f"--saved_model={root}",
                            f"--support_dir={elsewhere}", f"--query={elsewhere}"],
                           cwd=elsewhere, env=env, capture_output=True, text=True)
  assert predict.returncode == 1, predict.stderr[-3000:]
  lines = [line for line in predict.stderr.splitlines() if line.startswith("predict: ")]
  assert len(lines) == 1 and lines[0].startswith(
      f"predict: {root / 'saved_model'} is a regression model (num_classes 0), not a classifier")

  export_image_model = (
      "import gin, keras, tensorflow as tf\n"
      "from l2f_tf import export\n"
      "from l2f_tf.meta.learner import MetaLearner\n"
      "from l2f_tf.models.conv4 import conv4\n"
      "gin.parse_config(\"BatchNorm.mode = 'support'\")\n"
      "keras.utils.set_random_seed(0)\n"
      "loss = lambda y, p: tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, p))\n"
      "learner = MetaLearner(conv4(num_classes=2, image_shape=(16, 16, 3), filters=2), loss)\n"
      "specs = [tf.TensorSpec([2, 16, 16, 3], tf.float32, name='support_x'),\n"
      "         tf.TensorSpec([2], tf.int32, name='support_y'),\n"
      "         tf.TensorSpec([None, 16, 16, 3], tf.float32, name='query_x')]\n"
      "export.export(learner, 'images_sm', specs, num_steps=1, max_steps=1,\n"
      "              preprocess=lambda x: x / 255.0)\n")
  subprocess.run([sys.executable, "-c", export_image_model], cwd=elsewhere, env=env, check=True,
                 capture_output=True)
  rng = np.random.default_rng(0)
  pixels = lambda size: rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
  for name in ("cat", "dog"):
    (elsewhere / "support" / name).mkdir(parents=True)
    Image.fromarray(pixels(20)).save(elsewhere / "support" / name / "a.png")
  (elsewhere / "queries").mkdir()
  Image.fromarray(pixels(30)).save(elsewhere / "queries" / "q1.jpg")
  Image.fromarray(pixels(12)).convert("L").save(elsewhere / "queries" / "q2.png")
  labelled = subprocess.run([sys.executable, "-m", "l2f_tf.predict", "--saved_model=images_sm",
                             "--support_dir=support", "--query=queries"],
                            cwd=elsewhere, env=env, capture_output=True, text=True)
  assert labelled.returncode == 0, labelled.stderr[-3000:]
  rows = [line.split("\t") for line in labelled.stdout.strip().splitlines()]
  assert [r[0] for r in rows] == [os.path.join("queries", "q1.jpg"),
                                  os.path.join("queries", "q2.png")]
  assert all(r[1] in ("cat", "dog") and 0.5 <= float(r[2]) <= 1 for r in rows)
