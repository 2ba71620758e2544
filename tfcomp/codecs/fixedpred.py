"""fixedpred: a non-learned lossless baseline codec on tfcomp's table-coder op.

Not a published system: the default lossless codec until a learned one ships, and a
sanity baseline for the learned ones. Per image, tfcomp.entropy.gradient's model: a
gradient predictor per decorrelated plane, block-adaptive Laplacian tables, sections
"classes" (every plane's block classes) and "plane<c>" (each plane's residuals).

The tables (one discretized Laplacian per scale class and bit depth) are built once by
`build_tables`, written by `save_tables` to this model's weights file
(tfcomp/zoo/weights/fixedpred-v1.npz) and never recomputed by the decoder; new tables
need a new model name.
"""
import io

import numpy as np

from tfcomp import codecs, container
from tfcomp.entropy import gradient


def build_tables():
  """The model's tables for 8- and 16-bit samples, as a dict of integer arrays."""
  return {f"{name}{bits}": value for bits in (8, 16)
          for name, value in gradient.build_tables(bits).items()}


def save_tables(path):
  buffer = io.BytesIO()
  np.savez_compressed(buffer, **build_tables())
  with open(path, "wb") as f:
    f.write(buffer.getvalue())


class FixedPredCodec(codecs.Codec):
  """Gradient predictor with block-adaptive Laplacian tables (lossless, 8/16-bit, 1-4 ch)."""

  lossless = True

  def __init__(self, name, weights_path):
    self.name = name
    with open(weights_path, "rb") as f:
      raw = f.read()
    self._hash = container.weights_hash_of(raw)
    with np.load(io.BytesIO(raw)) as tables:
      self._coders = {bits: gradient.GradientCoder(bits, {
          name: tables[f"{name}{bits}"] for name in gradient.TABLE_NAMES}) for bits in (8, 16)}

  @property
  def weights_hash(self):
    return self._hash

  def compress(self, image):
    coder = self._coders[image.dtype.itemsize * 8]
    residuals, classes = coder.analyze(image)
    sections = {"classes": coder.encode_classes(classes).numpy()}
    for c in range(len(residuals)):
      sections[f"plane{c}"] = coder.encode_residuals(residuals[c:c + 1],
                                                     classes[c:c + 1]).numpy()
    return sections

  def decompress(self, sections, geometry):
    coder = self._coders[geometry.bit_depth]
    h, w, channels = geometry.height, geometry.width, geometry.channels
    expected = {"classes"} | {f"plane{c}" for c in range(channels)}
    if set(sections) != expected:
      raise container.FormatError(
          f"expected sections {sorted(expected)}, found {sorted(sections)}")
    classes = coder.decode_classes(sections["classes"], channels, h, w)
    residuals = np.concatenate([
        coder.decode_residuals(sections[f"plane{c}"], classes[c:c + 1], h, w)
        for c in range(channels)])
    return coder.reconstruct(residuals).numpy()
