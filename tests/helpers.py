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
