"""tools/train.py --strategy: workers on 127.0.0.1 train as one process with the global batch
would, and a cluster whose worker was killed resumes from the chief's checkpoint."""
import os
import re
import signal
import time

import numpy as np
import pytest

import helpers
from tfcomp import io, models, testing, training

# imgcomp: the quickest family to trace, and one with two optimizers.
TINY = ["--model", "imgcomp", "--config", "b", "--batch_size", "4", "--crop_size", "16",
        "--set=num_filters=8", "--set=num_stacks=0", "--set=latent_channels=4",
        "--set=context_filters=4", "--summary_every", "1", "--checkpoint_every", "1"]
TIMEOUT = 600  # seconds a worker may take before the test calls it a hang


@pytest.fixture(scope="module")
def images(tmp_path_factory):
  folder = tmp_path_factory.mktemp("images")
  for i in range(6):
    io.write_png(str(folder / f"im{i}.png"), testing.smooth_image(40 + i, 56, 3, seed=i))
  return str(folder)


def _start_workers(argv, logdir):
  return helpers.tool("bench_train").start_workers(argv, logdir, 2)


def _wait(workers):
  return [w.wait(timeout=TIMEOUT) for w in workers]


def _log(logdir, i):
  with open(os.path.join(logdir, f"worker{i}.log"), errors="replace") as f:
    return f.read()


def _digests(logdir, count, step):
  """The weights digest each worker logged when it finished at `step`."""
  found = []
  for i in range(count):
    match = re.findall(rf"finished at step {step}, weights (\w+)", _log(logdir, i))
    assert match, _log(logdir, i)[-3000:]
    found.append(match[-1])
  return found


def _restart_and_finish(argv, logdir, saved, steps):
  """Starts the cluster again (on other ports): every worker resumes from the chief's
  checkpoint of step `saved` and they finish `steps` in step."""
  workers = _start_workers(argv, logdir)
  assert _wait(workers) == [0, 0], _log(logdir, 0)[-3000:]
  for i in range(2):
    assert re.search(rf"resumed from \S+ckpt-{saved} at step {saved}\n", _log(logdir, i))
  first, second = _digests(logdir, 2, steps)
  assert first == second


def test_two_workers_train_as_one_process_with_the_global_batch(tmp_path, images):
  # One step: from there on, the exact path's rounding of weights to their grids can turn
  # the float-level differences of summing per worker into whole grid steps.
  argv = [*TINY, "--train", images, "--steps", "1"]
  logdir = str(tmp_path / "two")
  os.makedirs(logdir)
  workers = _start_workers(argv, logdir)
  single = str(tmp_path / "one")
  helpers.tool("train").main(["train.py", *argv, "--logdir", single])
  assert _wait(workers) == [0, 0], _log(logdir, 1)[-3000:]
  first, second = _digests(logdir, 2, 1)
  assert first == second  # the workers hold identical weights
  # The chief alone writes the model, summaries and the real checkpoints.
  assert os.path.exists(os.path.join(logdir, "ckpt", "ckpt-1.index"))
  assert not os.path.exists(os.path.join(logdir, ".ckpt-worker1"))
  cluster = training.named_weights(models.load(os.path.join(logdir, "model.npz"))[1])
  alone = training.named_weights(models.load(os.path.join(single, "model.npz"))[1])
  assert sorted(cluster) == sorted(alone)
  # Adam's first step moves each weight by lr g / (|g| + eps), about lr = 5e-4 for any
  # clear gradient g, and anything up to 2 lr apart where g is so small that the float
  # noise of summing it in another order flips its sign: that happens to a handful of
  # weights (none of these 4,636; 3 of a tiny SReC's 19,106). Other crops or another start
  # would move most weights a whole lr apart.
  diffs = np.concatenate([np.abs(cluster[name].numpy() - variable.numpy()).ravel()
                          for name, variable in alone.items()])
  assert np.mean(diffs > 1e-6) < 0.01 and np.mean(diffs > 5e-5) < 0.001, np.sort(diffs)[-20:]
  # Started again with more steps, the cluster resumes.
  argv[argv.index("--steps") + 1] = "2"
  _restart_and_finish(argv, logdir, 1, 2)


@pytest.mark.slow  # a minute or more for the survivor to notice; the test above resumes
def test_a_killed_worker_stops_the_cluster_and_a_restart_resumes(tmp_path, images):
  argv = [*TINY, "--train", images, "--steps", "12"]
  logdir = str(tmp_path / "run")
  os.makedirs(logdir)
  workers = _start_workers(argv, logdir)
  deadline = time.time() + TIMEOUT
  while not os.path.exists(os.path.join(logdir, "ckpt", "ckpt-2.index")):
    assert time.time() < deadline and all(w.poll() is None for w in workers), _log(logdir, 0)
    time.sleep(0.5)
  workers[1].send_signal(signal.SIGKILL)
  # The survivor notices and stops with an error instead of waiting forever.
  assert workers[0].wait(timeout=TIMEOUT) != 0
  saved = max(int(m) for m in re.findall(r"ckpt-(\d+)\.index",
                                         " ".join(os.listdir(os.path.join(logdir, "ckpt")))))
  assert saved < 12
  _restart_and_finish(argv, logdir, saved, 12)
