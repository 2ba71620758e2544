"""Files decode alike on other machines: across processes, thread counts, instruction
sets and convolution backends (see tfcomp.exact and tools/check_portable.py)."""
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from tfcomp import codecs, io, ops, testing, zoo

import helpers

SCRIPT = r"""
import hashlib, sys
import numpy as np
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(int(sys.argv[1]))
tf.config.threading.set_inter_op_parallelism_threads(int(sys.argv[1]))
from tfcomp import codecs, ops, testing, zoo
mode, path = sys.argv[2], sys.argv[3]
rng = np.random.default_rng(42)
params = testing.random_mixture_params(rng, (64, 48), 3, 10)
image = testing.smooth_image(64, 48, 3, seed=5)
if mode == "encode":
  stream = ops.mixture_encode(image.astype(np.int32), *params).numpy()
  with open(path + ".mix", "wb") as f:
    f.write(stream)
  with open(path + ".tfc", "wb") as f:
    f.write(codecs.compress(testing.photo_mosaic(120, 77), zoo.load(zoo.DEFAULT)))
else:
  with open(path + ".mix", "rb") as f:
    decoded = ops.mixture_decode(f.read(), *params).numpy()
  assert (decoded == image).all(), "mixture stream decoded differently"
  with open(path + ".tfc", "rb") as f:
    decoded, _ = codecs.decompress(f.read(), zoo.load)
  assert (decoded == testing.photo_mosaic(120, 77)).all()
  print(hashlib.sha256(decoded.tobytes()).hexdigest())
"""


def _run(threads, mode, path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run([sys.executable, "-c", SCRIPT, str(threads), mode, str(path)],
                          capture_output=True, text=True, env=env, timeout=300)
  assert result.returncode == 0, result.stderr
  return result.stdout


def test_in_process_streams_match_the_other_process(tmp_path):
  """The same inputs give byte-identical streams here and in a fresh process."""
  path = tmp_path / "stream"
  _run(2, "encode", path)
  rng = np.random.default_rng(42)
  params = testing.random_mixture_params(rng, (64, 48), 3, 10)
  image = testing.smooth_image(64, 48, 3, seed=5)
  here = ops.mixture_encode(image.astype(np.int32), *params).numpy()
  assert hashlib.sha256(here).digest() == hashlib.sha256(
      (tmp_path / "stream.mix").read_bytes()).digest()
  here = codecs.compress(testing.photo_mosaic(120, 77), zoo.load(zoo.DEFAULT))
  assert here == (tmp_path / "stream.tfc").read_bytes()


# One model per learned family: the shipped weights, as users run them.
FAMILY_MODELS = ["srec-small-v5", "l3c-small-v3", "rc-small-v1", "hyperprior-ms-v5-q2",
                 "imgcomp-v5-c", "hific-layered-v1-mi"]


# The settings furthest from this machine's: the oldest instruction set, Eigen instead of
# oneDNN, one thread. ONEDNN_MAX_CPU_ISA=AVX lies between SSE41 and this machine's (and
# test_traced_networks_compute_alike_on_other_instruction_sets runs a network under it);
# the slow run adds it and an unchanged fresh process.
FARTHEST_SETTINGS = ("ONEDNN_MAX_CPU_ISA=SSE41", "TF_ENABLE_ONEDNN_OPTS=0",
                     "TF_NUM_INTRAOP_THREADS=1")


@pytest.mark.parametrize("settings", [
    FARTHEST_SETTINGS,
    pytest.param(None, marks=pytest.mark.slow, id="every-setting")])
def test_every_learned_family_decodes_alike_under_other_settings(tmp_path, settings):
  """Files written here decode in fresh processes standing in for other machines (older
  instruction sets, Eigen instead of oneDNN, one thread): lossless ones exactly, lossy ones
  with identical latents and pixels within 1 of this machine's decoding."""
  check_portable = helpers.tool("check_portable")
  settings = settings or tuple(check_portable.SETTINGS)
  assert set(FARTHEST_SETTINGS) <= set(check_portable.SETTINGS)
  images = [("mosaic", testing.photo_mosaic(70, 53)),
            ("gray", testing.smooth_image(33, 41, 1, seed=3))]
  report = check_portable.check(FAMILY_MODELS, images, str(tmp_path), settings=settings,
                                log=lambda _: None)
  for name, row in report.items():
    assert set(row) == set(settings)
    for setting, cells in row.items():
      assert cells["ok"], (name, setting, cells["failures"])
      assert cells["latents_identical"]
      assert cells["max_diff"] <= (0 if zoo.get(name).lossless else 1), (name, setting)


def test_decompress_command_runs_without_onednn(tmp_path):
  path = tmp_path / "x.tfc"
  path.write_bytes(codecs.compress(testing.photo_mosaic(40, 30), zoo.load(zoo.DEFAULT)))
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="0")
  result = subprocess.run([sys.executable, "-m", "tfcomp_cli", "decompress", str(path),
                           str(tmp_path / "x.png")], capture_output=True, text=True, env=env,
                          timeout=300, cwd=os.path.dirname(os.path.dirname(__file__)))
  assert result.returncode == 0, result.stderr
  decoded = io.read_image(tmp_path / "x.png")
  np.testing.assert_array_equal(decoded, testing.photo_mosaic(40, 30))


STEP_SCRIPT = r"""
import sys
import numpy as np
import tensorflow as tf
from tfcomp import zoo
model = zoo.load("srec-small-v5").model
rng = np.random.default_rng(0)
inputs = tf.constant(rng.uniform(-1, 1, (1, 128, 192, 9)).astype(np.float32))
context = tf.constant(rng.normal(0, 0.5, (1, 128, 192, 32)).astype(np.float32))
raw, _ = model._steps[1][2](inputs, context)  # a traced sub-step network, as coding runs it
np.save(sys.argv[1], raw.numpy())
"""


def test_traced_networks_compute_alike_on_other_instruction_sets(tmp_path):
  """TensorFlow fuses a bias and a following residual add into the convolution before
  them; oneDNN then sums onto the residual in an order that its kernel for the
  instruction set decides (this network differed in 193,065 of 2.9M values between AVX-512
  and AVX). tfcomp.exact's own bias op keeps its sums out of such fusions."""
  outputs = []
  for setting in ({}, {"ONEDNN_MAX_CPU_ISA": "AVX"}):
    path = tmp_path / f"out{len(outputs)}.npy"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **setting)
    result = subprocess.run([sys.executable, "-c", STEP_SCRIPT, str(path)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    outputs.append(np.load(path))
  assert outputs[0].tobytes() == outputs[1].tobytes()
