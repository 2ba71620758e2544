"""Loads tfcomp's custom-op library once, on first use, with a helpful error."""
import glob
import os
import threading

import tensorflow as tf

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_lock = threading.Lock()
_module = None


class OpsNotBuiltError(ImportError):
  """The shared library of tfcomp's ops is missing or does not fit this TensorFlow."""


def library_path():
  """The path of the compiled op library inside the package, or None."""
  found = sorted(glob.glob(os.path.join(_PACKAGE_DIR, "_tfcomp_ops*.so")))
  return found[0] if found else None


def load():
  """Returns the loaded op module, loading it on the first call."""
  global _module
  if _module is None:
    with _lock:
      if _module is None:
        path = library_path()
        if path is None:
          raise OpsNotBuiltError(
              f"tfcomp's custom ops are not built (no _tfcomp_ops*.so in {_PACKAGE_DIR}). "
              "Install the package with `pip install .` (or `pip install -e .`), which "
              "compiles them with g++.")
        try:
          _module = tf.load_op_library(path)
        except (tf.errors.NotFoundError, OSError) as e:
          raise OpsNotBuiltError(
              f"cannot load {path} into TensorFlow {tf.__version__}: {e}. It was probably "
              "built for another TensorFlow version; reinstall tfcomp to rebuild it.") from e
  return _module
