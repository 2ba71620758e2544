"""tfcomp: learned image compression in TensorFlow 2 / Keras, with real bitstreams."""
import os

__version__ = "0.2.0"

# TensorFlow's oneDNN convolutions are faster here than Eigen's, its default on CPUs
# without AVX-512. Coding does not depend on them: the networks that decide probabilities
# compute exactly on any backend (tfcomp.exact). TensorFlow reads this once, at its import.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# SavedModels written by tools/export.py run tensorflow-compression's range-coding ops and
# tfcomp's own (tfcomp.exact's); importing registers them, so `import tfcomp` is all
# `tf.saved_model.load` needs. An unbuilt op library is reported on first use instead.
import tensorflow_compression  # pylint: disable=unused-import,wrong-import-position
from tfcomp import ops as _ops  # pylint: disable=wrong-import-position

try:
  _ops.load()
except _ops.OpsNotBuiltError:
  pass
