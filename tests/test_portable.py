"""Encoder and decoder agree across processes and intra-op thread counts."""
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from tfcomp import codecs, ops, testing, zoo

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


def test_encode_in_one_process_decode_in_another_with_other_threads(tmp_path):
  path = tmp_path / "stream"
  _run(1, "encode", path)
  assert _run(2, "decode", path) == _run(1, "decode", path)


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


MODEL_SCRIPT = r"""
import sys
import numpy as np
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(int(sys.argv[1]))
tf.config.threading.set_inter_op_parallelism_threads(int(sys.argv[1]))
from tfcomp import codecs, testing
mode, weights, path = sys.argv[2:5]
codec = codecs.from_weights("tiny", weights)
if codec.lossless:
  codec.fallback = False  # the model's own streams, never PNG tiles
image = testing.smooth_image(200, 150, 3, seed=11)
if mode == "encode":
  with open(path, "wb") as f:
    f.write(codecs.compress(image, codec))
  expected = image if codec.lossless else codec.estimate(image)["x_hat"]
  np.save(path + ".npy", expected)
else:
  with open(path, "rb") as f:
    decoded, _ = codecs.decompress(f.read(), lambda _: codec)
  assert (decoded == np.load(path + ".npy")).all()
"""


def _tiny_model(family):
  """A small untrained model whose network outputs vary (what the coder must reproduce)."""
  from tfcomp import models  # pylint: disable=import-outside-toplevel
  if family == "l3c":
    return models.L3C(num_features=8, num_blocks=1, num_components=3)
  model = models.Imgcomp(num_filters=16, num_stacks=1, stack_blocks=1, latent_channels=8,
                         context_filters=8)
  rng = np.random.default_rng(3)
  for v in model.context_model.trainable_variables:
    v.assign(rng.normal(0, 0.1, v.shape))
  return model


@pytest.mark.parametrize("family", ["l3c", "imgcomp"])
def test_model_files_decode_in_another_process_with_other_threads(tmp_path, family):
  """The network's float outputs feed the coder: both sides must compute them alike."""
  from tfcomp import models  # pylint: disable=import-outside-toplevel
  model = _tiny_model(family)
  models.build_variables(model)
  weights = tmp_path / "tiny.npz"
  models.save(model, family, weights)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  def run(threads, mode):
    result = subprocess.run([sys.executable, "-c", MODEL_SCRIPT, str(threads), mode,
                             str(weights), str(tmp_path / "image.tfc")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
  run(1, "encode")
  run(2, "decode")
  run(1, "decode")
