"""A task of one's own (docs/your_own_task.md): a gin file that imports one's own module runs
through the real command line without PYTHONPATH, and evaluate, compare and analyze then work
on that run from any folder; runs made in Python work with them too, given a gin file that
builds their domain (their learner comes from settings.json), and say in one line what to do
without it."""

import json
import os
import subprocess
import sys
import textwrap

import gin
import pytest

from l2f_tf import analyze, compare, config, run_folder
from l2f_tf.evaluate import evaluate_saved_model
from l2f_tf.run_folder import RunFolder
from l2f_tf.train import experiment, restore, settings

# The command line's run and the tools around it: end to end, the slow tier (docs/testing.md).
pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A module of the user's: regression tasks y = a x + b x^2 as arrays, made by a configurable
# function (its name is unique to this file: a test process imports it once).
MODULE = textwrap.dedent('''\
    """Quadratic regression tasks for l2f_tf."""
    import gin
    import numpy as np


    @gin.configurable
    def {name}_splits(seed=0, points=10):
      rng = np.random.default_rng(seed)

      def tasks(n):
        a, b = rng.uniform(-2, 2, (2, n, 1, 1))
        x = rng.uniform(-3, 3, (n, points, 1))
        return x.astype(np.float32), (a * x + b * x ** 2).astype(np.float32)

      return {{"train": tasks(20), "test": tasks(6)}}
    ''')
DOMAIN_GIN = textwrap.dedent("""\
    import {name}
    run_experiment.domain = @ArrayRegression()
    ArrayRegression.splits = @{name}_splits()
    ArrayRegression.num_shots = 3
    ArrayRegression.num_queries = 4
    ArrayRegression.meta_batch_size = 2
    """)
# The rest of an experiment's gin file: tiny loops.
EXPERIMENT_GIN = textwrap.dedent("""\
    include 'learners/l2f.gin'
    MetaLearner.num_inner_steps = 1
    Trainer.num_iterations = 2
    Trainer.jit_compile = False
    Trainer.summary_every = 0
    Runner.log_every_seconds = 0
    run_experiment.num_eval_tasks = 4
    run_experiment.plot = False
    run_experiment.export_max_steps = 2
    """)


@pytest.fixture(autouse=True)
def release_locks():
  yield
  run_folder.release_locks()


def write_task(folder, name, experiment_lines=True):
  """``<name>.py`` and ``<name>.gin`` (the domain, and the tiny experiment) in ``folder``."""
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, f"{name}.py"), "w") as f:
    f.write(MODULE.format(name=name))
  path = os.path.join(folder, f"{name}.gin")
  with open(path, "w") as f:
    f.write(DOMAIN_GIN.format(name=name) + (EXPERIMENT_GIN if experiment_lines else ""))
  return path


@pytest.fixture
def clean_imports():
  """Restores sys.path and forgets the modules that a test's gin files imported."""
  path, modules = list(sys.path), set(sys.modules)
  yield
  sys.path[:] = path
  for name in set(sys.modules) - modules:
    if name.startswith("own_task_"):
      del sys.modules[name]


def test_a_gin_file_imports_a_module_from_its_own_folder(tmp_path, monkeypatch, clean_imports):
  gin_file = write_task(str(tmp_path / "task"), "own_task_folder")
  monkeypatch.chdir(tmp_path)  # not the module's folder
  config.parse([gin_file], [])
  assert "own_task_folder" in sys.modules
  assert config.import_path_lines() == f"{config.IMPORT_PATH_MARK}{tmp_path / 'task'}\n"
  assert gin.query_parameter("ArrayRegression.num_shots") == 3


def test_an_included_gin_file_may_import_the_module(tmp_path, monkeypatch, clean_imports):
  """The import is in the file that the experiment's gin file includes (from the folder that
  holds both: gin finds includes from the current folder)."""
  write_task(str(tmp_path), "own_task_included", experiment_lines=False)
  with open(tmp_path / "experiment.gin", "w") as f:
    f.write("include 'own_task_included.gin'\ninclude 'learners/maml.gin'\n")
  monkeypatch.chdir(tmp_path)
  assert str(tmp_path) not in sys.path
  domain = restore.parse_domain(["experiment.gin"])
  assert domain.num_shots == 3
  assert config.import_path_lines() == f"{config.IMPORT_PATH_MARK}{tmp_path}\n"


def test_a_recorded_import_path_finds_the_module_from_anywhere(tmp_path, monkeypatch,
                                                               clean_imports):
  """What a run's operative_config.gin holds: the import and the folder it was found in."""
  write_task(str(tmp_path / "task"), "own_task_recorded")
  os.makedirs(tmp_path / "run")
  with open(tmp_path / "run" / "operative_config.gin", "w") as f:
    f.write(f"{config.IMPORT_PATH_MARK}{tmp_path / 'task'}\n" +
            DOMAIN_GIN.format(name="own_task_recorded"))
  monkeypatch.chdir(tmp_path / "run")
  domain = restore.parse_domain([str(tmp_path / "run" / "operative_config.gin")])
  assert domain.num_shots == 3 and domain.sampler("test").num_tasks == 6


def test_a_missing_module_is_one_line_naming_it_and_the_folders(tmp_path, monkeypatch,
                                                                clean_imports):
  folder = tmp_path / "task"
  gin_file = write_task(str(folder), "own_task_missing")
  os.remove(folder / "own_task_missing.py")
  monkeypatch.chdir(tmp_path)
  with pytest.raises(ValueError) as error:
    config.parse([gin_file], [])
  assert str(error.value) == (
      f"{gin_file} imports the module 'own_task_missing', which is not installed nor in "
      f"{folder}, {tmp_path}: put own_task_missing.py (or its package folder) in one of these "
      "folders.")
  # The module is there, but a module it imports is not.
  with open(folder / "own_task_missing.py", "w") as f:
    f.write("import own_task_not_installed_anywhere\n")
  with pytest.raises(ValueError, match=r"imports the module 'own_task_missing', which imports "
                     r"'own_task_not_installed_anywhere': that module is not installed"):
    config.parse([gin_file], [])


# --- the command line ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def command_line_runs(tmp_path_factory):
  """An L2F run of a gin file that imports the user's module, made by the real command line
  in the module's folder (no PYTHONPATH), and a MAML run of the same file made in this
  process (both read by the tests; the test process imports the module on first use)."""
  folder = str(tmp_path_factory.mktemp("own_task"))
  gin_file = write_task(folder, "own_task_cli")
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  done = subprocess.run([sys.executable, os.path.join(REPO, "run_experiment.py"),
                         "--gin_file=own_task_cli.gin", "--root_dir=runs/l2f"], cwd=folder,
                        env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  return folder, gin_file, os.path.join(folder, "runs", "l2f"), os.path.join(folder, "runs", "maml")


def test_the_command_line_runs_a_gin_file_that_imports_ones_own_module(
    command_line_runs, tmp_path, monkeypatch):
  folder, gin_file, l2f, maml = command_line_runs
  with open(RunFolder(l2f).config) as f:
    stored = f.read()
  assert stored.startswith(f"{config.IMPORT_PATH_MARK}{folder}\nimport own_task_cli\n")
  assert "ArrayRegression.splits = @own_task_cli_splits()" in stored
  with open(RunFolder(l2f).results) as f:
    results = json.load(f)
  assert results["domain"] == "array_regression" and results["method"] == "MAML+L2F"
  # evaluate reads the SavedModel's copy of the config, from another folder: the first import
  # of the module in this process comes from the recorded folder.
  monkeypatch.chdir(tmp_path)
  assert "own_task_cli" not in sys.modules
  evaluated = evaluate_saved_model(l2f, num_tasks=4, seed=20200614)
  for name, figure in results["evaluations"]["test"].items():
    assert evaluated["test"][name]["mean"] == pytest.approx(figure["mean"], rel=1e-4)
  # A second run of the same gin file (MAML), then compare and analyze both.
  restore.setup_run(maml, [gin_file], ["MetaLearner.attenuation = None"])
  experiment.run_experiment(maml)
  run_folder.release_locks()
  report = compare.paired_differences([maml, l2f])
  assert report["shared_tasks"], report["note"]
  assert report["num_tasks"] == 4 and report["steps"] == [0, 1]
  analysis = analyze.analyze([maml, l2f], str(tmp_path / "analysis"), num_tasks=4)
  assert [run["method"] for run in analysis["runs"].values()] == ["MAML", "MAML+L2F"]
  assert os.path.exists(tmp_path / "analysis" / "conflict_per_task.png")


# --- runs made in Python -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def python_runs(tmp_path_factory):
  """MAML and L2F runs of the user's module made with Trainer + Runner (no operative config),
  and a gin file that builds their domain."""
  import l2f_tf  # pylint: disable=import-outside-toplevel
  folder = str(tmp_path_factory.mktemp("own_task_python"))
  gin_file = write_task(folder, "own_task_python", experiment_lines=False)
  sys.path.insert(0, folder)
  import own_task_python  # pylint: disable=import-error,import-outside-toplevel
  roots = []
  for name, attenuation in (("maml", None), ("l2f", l2f_tf.TaskConditionedAttenuation())):
    domain = l2f_tf.ArrayRegression(splits=own_task_python.own_task_python_splits(),
                                    num_shots=3, num_queries=4, meta_batch_size=2)
    learner = l2f_tf.MetaLearner(domain.build_model(), domain.loss_fn, num_inner_steps=1,
                                 attenuation=attenuation)
    root = os.path.join(folder, "runs", name)
    trainer = l2f_tf.Trainer(learner, domain, root, num_iterations=2, jit_compile=False,
                             summary_every=0)
    l2f_tf.Runner(trainer, log_every_seconds=0).run(num_eval_tasks=4, plot=False,
                                                    export_max_steps=2)
    run_folder.release_locks()
    roots.append(root)
  gin.clear_config()
  return gin_file, roots


def test_the_learner_of_a_python_run_is_read_from_its_settings(python_runs):
  _, (maml, l2f) = python_runs
  bindings = restore.learner_bindings(settings.stored(RunFolder(l2f)))
  assert bindings[0] == "build_learner.learner_cls = @MetaLearner"
  assert "MetaLearner.attenuation = @task_conditioned_attenuation()" in bindings
  assert "task_conditioned_attenuation.transform = 'sigmoid'" in bindings
  assert "MetaLearner.num_inner_steps = 1" in bindings and "MetaLearner.inner_lr = 0.01" in bindings
  assert "MetaLearner.attenuation = None" in restore.learner_bindings(
      settings.stored(RunFolder(maml)))
  with pytest.raises(ValueError, match=r"trained in Python with a LEO2 learner"):
    restore.learner_bindings({"Trainer.learner": "LEO2"}, "runs/x")


def test_evaluate_compare_and_analyze_rebuild_a_python_run_from_a_gin_file(python_runs,
                                                                           tmp_path):
  gin_file, (maml, l2f) = python_runs
  with pytest.raises(ValueError, match=r"holds no gin config .* made in Python.*--gin_file="):
    evaluate_saved_model(l2f, num_tasks=4, seed=20200614)
  results = [RunFolder(root).read_results()["evaluations"]["test"] for root in (maml, l2f)]
  evaluated = evaluate_saved_model(l2f, num_tasks=4, seed=20200614, gin_files=[gin_file])
  for name, figure in results[1].items():
    assert evaluated["test"][name]["mean"] == pytest.approx(figure["mean"], rel=1e-4)
  report = compare.paired_differences([maml, l2f], gin_files=[gin_file])
  assert report["shared_tasks"], report["note"]
  for name, figure in report["differences"]["test"]["l2f - maml"].items():
    assert figure["mean_a"] == pytest.approx(results[0][name]["mean"], rel=1e-4)
    assert figure["mean_b"] == pytest.approx(results[1][name]["mean"], rel=1e-4)
  analysis = analyze.analyze([maml, l2f], str(tmp_path / "analysis"), num_tasks=4,
                             gin_files=[gin_file])
  assert [run["method"] for run in analysis["runs"].values()] == ["MAML", "MAML+L2F"]
  with pytest.raises(ValueError, match=r"runs/maml was made in Python: it has no "
                     r"operative_config.gin .* Pass --gin_file="):
    analyze.analyze([maml], str(tmp_path / "analysis"), num_tasks=4)


def test_a_gin_file_of_other_data_or_settings_is_refused(python_runs, tmp_path):
  gin_file, (_, l2f) = python_runs
  other = str(tmp_path / "other.gin")
  with open(gin_file) as f, open(other, "w") as out:
    out.write(f.read() + "own_task_python_splits.seed = 3\nArrayRegression.num_shots = 4\n")
  with pytest.raises(settings.ConfigMismatchError) as error:
    restore.restore_learner(l2f, gin_files=[other])
  assert "ArrayRegression.num_shots: 3 in the run, 4 now" in str(error.value)
  assert "ArrayRegression.data_sha256: '" in str(error.value)
  with pytest.raises(settings.ConfigMismatchError, match="data_sha256"):
    evaluate_saved_model(l2f, num_tasks=4, seed=1, gin_files=[other])


def test_evaluate_says_in_one_line_what_a_python_run_needs(python_runs):
  _, (_, l2f) = python_runs
  done = subprocess.run([sys.executable, "-m", "l2f_tf.evaluate", f"--saved_model={l2f}"],
                        cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 1 and done.stdout == ""
  lines = done.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f"evaluate: {l2f}/saved_model holds no gin "
                                                 "config"), done.stderr[-2000:]
  assert "--gin_file=" in lines[0]


@gin.configurable
def own_task_leo_network(num_classes, input_shape):
  from l2f_tf.models.leo_network import leo_network  # pylint: disable=import-outside-toplevel
  return leo_network(num_classes=num_classes, embedding_dim=input_shape[0], num_latents=4)


def test_a_leo_learner_made_in_python_is_rebuilt_from_its_settings(tmp_path):
  """LEO+L2F, with settings other than the defaults: the learner that settings.json
  describes is the one built again (check_rebuilt compares all their settings)."""
  import l2f_tf  # pylint: disable=import-outside-toplevel
  from tests.domains import test_arrays  # pylint: disable=import-outside-toplevel
  domain = l2f_tf.ArrayClassification(splits=test_arrays.classification_splits(), num_ways=3,
                                      network=own_task_leo_network)
  learner = l2f_tf.LEO(domain.build_model(), domain.loss_fn, num_latent_steps=2,
                       dropout_rate=0.25, attenuation=l2f_tf.LEOAttenuation(
                           points=("weights",), granularity="tensor"))
  folder = RunFolder(str(tmp_path / "leo"))
  folder.prepare()
  settings.record(folder, settings.describe(l2f_tf.Trainer(learner, domain, folder.root)))
  bindings = restore.learner_bindings(settings.stored(folder))
  assert "leo_attenuation.points = ('weights',)" in bindings
  assert "LEO.dropout_rate = 0.25" in bindings
  gin.clear_config()
  domain = restore.parse_domain([], bindings + [
      "run_experiment.domain = @ArrayClassification()", "ArrayClassification.num_ways = 3",
      "ArrayClassification.splits = @gin_classification_splits_for_test()",
      "ArrayClassification.network = @own_task_leo_network"])
  settings.check_rebuilt(folder, experiment.build_learner(domain), domain)
  gin.clear_config()  # (LEO is configurable: the bindings above would apply to it)
  with pytest.raises(settings.ConfigMismatchError, match=r"LEO.num_latent_steps: 2 in the run"):
    settings.check_rebuilt(folder, l2f_tf.LEO(domain.build_model(), domain.loss_fn), domain)
