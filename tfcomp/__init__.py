"""tfcomp: learned image compression in TensorFlow 2 / Keras, with real bitstreams."""
__version__ = "0.1.0"
