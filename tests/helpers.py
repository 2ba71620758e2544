"""Helpers for the tests that drive the `tfcomp` command."""
import io as _io

from tfcomp import cli


def run_cli(*argv):
  """Runs `tfcomp argv...` in-process; returns (exit status, stdout, stderr)."""
  out, err = _io.StringIO(), _io.StringIO()
  status = cli.main([str(a) for a in argv], out, err)
  return status, out.getvalue(), err.getvalue()


def roundtrip(codec, image):
  """Codes `image` into a file and back; asserts the result is bit-exact."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from tfcomp import codecs  # pylint: disable=import-outside-toplevel
  data = codecs.compress(image, codec)
  decoded, parsed = codecs.decompress(data, lambda _: codec)
  np.testing.assert_array_equal(decoded, image)
  assert decoded.dtype == image.dtype and decoded.shape == image.shape
  return data, parsed


def training_gradients(model, x):
  """One training-mode pass of `model` on x.

  Returns (out, scalars, grads): the model's outputs, its loss scalars, and the gradient
  of its loss for each trainable variable, as (variable, gradient or None) pairs.
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  with tf.GradientTape() as tape:
    out = model(x, training=True)
    loss, scalars = model.loss_and_scalars(x, out)
  variables = model.trainable_variables
  return out, scalars, list(zip(variables, tape.gradient(loss, variables)))


def without_gradient(grads):
  """Names of the variables in `training_gradients`' pairs that got no gradient."""
  return [v.name for v, g in grads if g is None]


def tool(name):
  """The module tools/<name>.py, imported so that tests call its main(argv) in-process."""
  import importlib  # pylint: disable=import-outside-toplevel
  import os  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools")
  if folder not in sys.path:
    sys.path.insert(0, folder)
  module = importlib.import_module(name)
  module.FLAGS.unparse_flags()
  return module


TINY_LOSSY = {"num_filters": 16, "latent_channels": 24, "hyper_filters": 16}
TINY_HIFIC = {"num_filters": 4, "latent_channels": 8, "hyper_filters": 8,
              "num_residual_blocks": 1, "discriminator_filters": 4}
# HiFiC on an HEVC base layer (transforms "layered").
TINY_LAYERED = {"transforms": "layered", "base_codec": "hevc", "qp": 40, "train_qps": [38, 42],
                "fusion_filters": 8, "fusion_blocks": 1}
TINY_LOSSLESS = {
    "l3c": {"num_features": 8, "num_blocks": 1, "num_components": 3, "num_scales": 2},
    "srec": {"num_features": 8, "num_blocks": 1, "num_components": 3, "num_levels": 2,
             "top_coder": "gradient"},
}


def tiny_lossy_codec(path, family="hyperprior", **overrides):
  """A codec around a small, untrained, coding-ready `family` model (hyperprior or
  hific; config fields changed by `overrides`) saved to `path`."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from tfcomp import models  # pylint: disable=import-outside-toplevel
  from tfcomp.codecs import lossy  # pylint: disable=import-outside-toplevel
  tf.random.set_seed(2)
  model = models.build(family, {**(TINY_HIFIC if family == "hific" else TINY_LOSSY),
                                **overrides})
  model = model.coding_copy()
  models.save(model, family, path)
  return lossy.LossyModelCodec(f"{family}-tiny", str(path))


def tiny_lossless_codec(family, path):
  """A codec around a small, untrained `family` model saved to `path`, coding every tile
  through the model (a random model would lose tiles to the PNG fallback), as a served
  model codes."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from tfcomp import models  # pylint: disable=import-outside-toplevel
  from tfcomp.codecs import lossless  # pylint: disable=import-outside-toplevel
  tf.random.set_seed(1)
  model = models.build(family, TINY_LOSSLESS[family])
  models.build_variables(model)
  models.save(model, family, path)
  return lossless.LosslessModelCodec(f"{family}-tiny", str(path), fallback=False)
