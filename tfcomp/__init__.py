"""tfcomp: learned image compression in TensorFlow 2 / Keras, with real bitstreams."""
import os

__version__ = "0.1.0"

# Learned codecs need TensorFlow's oneDNN convolutions: they give bit-identical floats for
# every thread count (Eigen's do not), so a decoder reproduces the encoder's mixture
# parameters exactly. TensorFlow reads this once, at its own import.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# SavedModels written by tools/export.py run tensorflow-compression's range-coding ops;
# importing it registers them, so `import tfcomp` is all `tf.saved_model.load` needs.
import tensorflow_compression  # pylint: disable=unused-import,wrong-import-position
