"""The pure-Python parts of ``benchmarks/vision_step.py --compare_reference``: machine facts,
the fallback when the authors' code cannot be set up or run, the ratio line. No torch, no
network, no TensorFlow: the timed sides are replaced by fakes."""

import os
import subprocess
import sys
import time

import pytest

from benchmarks import peer_code
from benchmarks import vision_step  # It defines absl flags (once per process).

CPUINFO = "".join(
    f"processor\t: {i}\nmodel name\t: Test CPU 9000\nphysical id\t: {i // 4}\n"
    f"core id\t\t: {i % 4 // 2}\ncpu cores\t: 2\nflags\t\t: fpu sse avx2\n\n" for i in range(8))
TF_SIDE = {"median_s": 3.45, "min_s": 3.4, "max_s": 3.6, "times": [3.4, 3.45, 3.6],
           "peak_mb": 1648.0, "first_call_s": 17.0, "tensorflow": "2.x", "keras": "3.x",
           "intra_op_threads": 0, "inter_op_threads": 0, "onednn": True}
AUTHORS_SIDE = {"median_s": 5.0, "min_s": 4.9, "max_s": 5.2, "times": [4.9, 5.0, 5.2],
                "peak_mb": 2048.0, "torch": "2.13.0+cpu", "torch_threads": 2,
                "torch_interop_threads": 2, "threads_set": 2, "second_order": True}


def test_machine_info_counts_physical_cores_and_logical_cpus():
  info = peer_code.machine_info(CPUINFO)
  assert info["cpu_model"] == "Test CPU 9000"
  assert info["logical_cpus"] == 8
  assert info["physical_cores"] == 4  # 2 sockets x 2 cores, 2 hyperthreads each
  assert "TF_ENABLE_ONEDNN_OPTS" in info and info["usable_cpus"] >= 1


def test_busy_cpus_is_a_fraction_of_the_cpus():
  assert 0.0 <= peer_code.busy_cpus(0.05) <= (os.cpu_count() or 1) + 0.01


def test_machine_info_of_this_machine_has_every_field():
  info = peer_code.machine_info()
  assert set(info) == {"cpu_model", "physical_cores", "logical_cpus", "usable_cpus",
                       "TF_ENABLE_ONEDNN_OPTS"}
  assert info["logical_cpus"] >= info["physical_cores"] >= 1


def test_ratio_and_row_formatting():
  label = "l2f_tf default (sequential)"
  assert vision_step.ratio_line(label, TF_SIDE, AUTHORS_SIDE) == f"{label} / authors: 0.69x"
  assert vision_step.format_row(label, TF_SIDE) == f"| {label} | 3.45 (3.40-3.60) | 1.61 GB |"


def _compare(setup, run_authors):
  lines, cases = [], []

  def run_l2f(case, repeats, precision_name, warmup, size, **kwargs):
    cases.append((case, precision_name))
    return dict(TF_SIDE)

  results = vision_step.compare_reference(
      repeats=3, warmup=1, size=28, folder="unused", git_dir=None, url="unused", threads=0,
      run_l2f=run_l2f, setup=setup, run_authors=run_authors, echo=lines.append,
      busy=lambda: 0.0)
  return lines, cases, results


def _fails(*args, **kwargs):
  raise peer_code.ReferenceUnavailable("git clone failed: no network")


@pytest.mark.parametrize("broken", ["setup", "run"])
def test_unavailable_reference_is_one_line_and_l2f_tf_alone(broken):
  setup = _fails if broken == "setup" else (lambda *a: ("python", "src", "origin"))
  lines, cases, results = _compare(setup, _fails)
  unavailable = [line for line in lines if "reference unavailable" in line]
  assert unavailable == ["Authors' reference unavailable (git clone failed: no network); "
                         "l2f_tf figures only."]
  # sequential (the default), plain, then the default with bfloat16 convolutions
  assert cases == [("5,5,0,0,1", "float32"), ("5,5,0,0,0", "float32"),
                   ("5,5,0,0,1", "bfloat16_conv")]
  assert set(results) == {"l2f_tf default (sequential)", "l2f_tf plain (one tape)",
                          "l2f_tf default, precision bfloat16_conv"}
  assert not any("/ authors" in line for line in lines)
  assert any(line.startswith("machine: ") for line in lines)
  assert any("oneDNN: TF_ENABLE_ONEDNN_OPTS=" in line and "TF reports on" in line
             for line in lines)


def test_available_reference_gives_rows_and_ratios():
  lines, _, results = _compare(lambda *a: ("python", "src", "local git snapshot"),
                               lambda *a, **kwargs: dict(AUTHORS_SIDE))
  assert vision_step.AUTHORS in results
  assert "l2f_tf default (sequential) / authors: 0.69x" in lines
  assert "l2f_tf plain (one tape) / authors: 0.69x" in lines
  assert any(line.startswith("authors: torch 2.13.0+cpu") and "get_num_threads() = 2" in line
             for line in lines)
  assert "l2f_tf default, precision bfloat16_conv / authors: 0.69x" in lines
  assert sum(line.startswith("| ") for line in lines) == 6  # header, rule, four rows


def test_failed_clone_raises_reference_unavailable(tmp_path):
  def run(command, **kwargs):
    return subprocess.CompletedProcess(command, 128, "", "fatal: could not resolve host\n")

  with pytest.raises(peer_code.ReferenceUnavailable, match="could not resolve host"):
    vision_step.setup_reference(str(tmp_path), None, "https://example.invalid/L2F", run)
  assert not os.path.exists(tmp_path / "src")


def test_unexpected_setup_error_becomes_reference_unavailable(tmp_path):
  def run(command, **kwargs):
    raise ValueError("boom")

  with pytest.raises(peer_code.ReferenceUnavailable, match="boom"):
    vision_step.setup_reference(str(tmp_path), "/no/such/git", "unused", run)


def test_rounds_give_per_round_ratios_and_their_median():
  default, plain = "l2f_tf default (sequential)", "l2f_tf plain (one tape)"
  timed = lambda s: dict(TF_SIDE, median_s=s)
  rounds = [{default: timed(2.0), plain: timed(1.0), vision_step.AUTHORS: timed(5.0)},
            {default: timed(3.0), plain: timed(1.5), vision_step.AUTHORS: timed(6.0)},
            {default: timed(2.4)},  # the authors' side failed: left out
            {default: timed(2.1), plain: timed(1.2), vision_step.AUTHORS: timed(7.0)}]
  lines = []
  medians = vision_step.summarise_rounds(rounds, echo=lines.append)
  assert medians[default] == pytest.approx(0.4)  # 0.40, 0.50, 0.30
  assert medians[plain] == pytest.approx(0.2)  # 0.20, 0.25, 0.17
  assert lines[0] == f"{default} / authors over 3 rounds: median 0.40x (rounds: 0.40x, 0.50x, 0.30x)"
  lines.clear()
  assert vision_step.summarise_rounds([{default: timed(2.0)}], echo=lines.append) == {}
  assert lines == ["No round has the authors' figure: no ratios."]


def test_run_capped_returns_the_output_of_a_process_within_the_cap():
  out = vision_step.run_capped([sys.executable, "-c", "print('ok')"], cap_mb=1e6)
  assert out.returncode == 0 and out.stdout.strip() == "ok"


def test_run_capped_stops_a_process_past_the_cap_and_says_how_far_it_got():
  command = [sys.executable, "-c", "import time; time.sleep(30)"]
  start = time.perf_counter()
  with pytest.raises(vision_step.MemoryCapExceeded,
                     match=r"did not fit: stopped at 3\.0 GB resident, past the 2\.0 GB cap"):
    vision_step.run_capped(command, cap_mb=2048, poll_s=0.05, rss=lambda pid: 3072.0)
  assert time.perf_counter() - start < 10


def test_resident_mb_of_this_process_and_of_no_process():
  assert vision_step.resident_mb(os.getpid()) > 1
  assert vision_step.resident_mb(2 ** 22 + 12345) == 0.0


def test_authors_side_that_does_not_fit_is_reported_with_its_memory():
  def too_big(*args, **kwargs):
    raise vision_step.MemoryCapExceeded(21000.0, 20480.0)

  lines, cases, results = [], [], None

  def run_l2f(case, repeats, precision_name, warmup, size, backbone, cap_mb):
    cases.append((case, backbone, cap_mb))
    return dict(TF_SIDE)

  results = vision_step.compare_reference(
      repeats=3, warmup=1, size=28, folder="unused", git_dir=None, url="unused", threads=0,
      run_l2f=run_l2f, setup=lambda *a: ("python", "src", "origin"), run_authors=too_big,
      echo=lines.append, busy=lambda: 0.0, backbone="resnet12", cap_mb=20480.0)
  assert vision_step.AUTHORS not in results
  assert f"{vision_step.AUTHORS}: did not fit: stopped at 20.5 GB resident, past the 20.0 GB " \
         "cap (--memory_cap_gb)" in lines
  assert lines[0].startswith("ResNet12 (64-128-256-512), 5-way 5-shot")
  assert "meta-batch 1" in lines[0]
  assert {backbone for _, backbone, _ in cases} == {"resnet12"}
  assert {cap for _, _, cap in cases} == {20480.0}


def test_meta_batch_sizes_follow_the_authors_configurations():
  assert vision_step.meta_batch_size(5) == 2 and vision_step.meta_batch_size(1) == 4
  assert vision_step.meta_batch_size(5, "resnet12") == 1
  assert vision_step.meta_batch_size(1, "resnet12") == 1


def _git(*args, cwd):
  subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_a_snapshot_without_some_blobs_still_gives_the_code(tmp_path):
  """A local snapshot may lack its largest files: the rest is extracted and the origin says
  which are absent; a second call reuses the copy."""
  repo = tmp_path / "repo"
  (repo / "pkg").mkdir(parents=True)
  (repo / "pkg" / "code.py").write_text("x = 1\n")
  (repo / "big.gif").write_bytes(b"GIF89a" + bytes(100))
  _git("init", "-q", cwd=repo)
  _git("add", ".", cwd=repo)
  _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c", cwd=repo)
  blob = subprocess.run(["git", "rev-parse", "HEAD:big.gif"], cwd=repo, capture_output=True,
                        text=True, check=True).stdout.strip()
  os.remove(repo / ".git" / "objects" / blob[:2] / blob[2:])
  folder = tmp_path / "scratch"
  src, origin = peer_code.fetch_source(str(folder), str(repo / ".git"), "unused", "pkg/code.py")
  assert open(os.path.join(src, "pkg", "code.py")).read() == "x = 1\n"
  assert not os.path.exists(os.path.join(src, "big.gif"))
  assert origin.startswith("local git snapshot, commit ") and "big.gif" in origin
  assert peer_code.fetch_source(str(folder), None, "unused", "pkg/code.py") == (src, origin)
  with pytest.raises(peer_code.ReferenceUnavailable, match="no other.py"):
    peer_code.fetch_source(str(tmp_path / "other"), str(repo / ".git"), "unused", "other.py")
