"""tfcomp: learned image compression in TensorFlow 2 / Keras, with real bitstreams.

`import tfcomp` itself imports neither TensorFlow nor a model, so that `tfcomp models`,
`tfcomp info` and `--help` start at once; the modules that code import TensorFlow.
"""
import os

__version__ = "0.2.0"

# TensorFlow's oneDNN convolutions are faster here than Eigen's, its default on CPUs
# without AVX-512. Coding does not depend on them: the networks that decide probabilities
# compute exactly on any backend (tfcomp.exact). TensorFlow reads this once, at its import.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def register_ops():
  """Registers the ops that tfcomp's SavedModels run (tensorflow-compression's range
  coders and tfcomp's own), as `tf.saved_model.load` needs before loading one."""
  import tensorflow_compression  # pylint: disable=import-outside-toplevel,unused-import
  from tfcomp import ops  # pylint: disable=import-outside-toplevel
  ops.load()
