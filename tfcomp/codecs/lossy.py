"""Learned lossy codecs (hyperprior, imgcomp): any model of the lossy contract, one image.

    model.stream_names -> names of its strings, which become the file's sections
    model.compress(x [1, Hp, Wp, 3] uint8) -> [scalar string per stream]
    model.decompress(strings, Hp, Wp) -> x_hat float [1, Hp, Wp, 3]
        = model.synthesis(model.decompress_latents(strings, Hp, Wp))

Tiling and padding rules (fixed by the format):
  * images are cut into TILE x TILE tiles in raster order (edge tiles are smaller), each
    coded independently, so memory stays bounded whatever the image size (an image of at
    most TILE x TILE is one tile);
  * a tile is padded on the bottom and right to a multiple of the model's `block_size` by
    repeating its last row and column, coded, and its reconstruction cropped back and
    rounded to 8 bits;
  * grayscale images are coded as R = G = B and decoded as the rounded mean of the three
    decoded channels.
Every latent shape follows from the padded tile size, so the file stores only the strings:
one section per stream, holding the bare string of a one-tile image, or the strings of
every tile (container.pack_chunks) otherwise.

All coding runs through the traced functions of `Serving`, the same ones `tools/export.py`
writes into a SavedModel, so files and SavedModel outputs are the same bytes; a model
whose coding leaves TensorFlow's graph (`graph_coding` False: HiFiC on an HEVC base layer)
codes through its own compress and decompress, in-process only.
"""
import numpy as np
import tensorflow as tf

from tfcomp import container
from tfcomp.codecs import learned
from tfcomp.codecs.lossless import tile_boxes

TILE = 1024


class Serving(tf.Module):
  """compress / decompress / estimate of one RGB image as traced TF functions.

      compress(image uint8 [H, W, 3]) -> {"strings_bytes": string [S], "shape": int32 [2]}
      decompress(strings_bytes, shape) -> {"image": uint8 [H, W, 3]}
      estimate(image) -> {"bits": float32, "image": uint8 [H, W, 3]}

  S strings, one per `model.stream_names`, named *_bytes so that TF Serving's REST API
  carries them base64-encoded. `estimate` is the model's non-coding path
  (cross-entropy bits); its reconstruction is the one `decompress` returns for
  `compress`'s strings.
  """

  def __init__(self, model):
    super().__init__(name="tfcomp_serving")
    # A SavedModel of this module needs the model's variables and the functions below; a
    # tracked Keras model would bring every layer's own traced functions along (the
    # larger part of the export's time), so the model is set past attribute tracking.
    self.model_variables = list(model.variables)
    object.__setattr__(self, "model", model)

  def padded(self, image):
    """[1, Hp, Wp, 3]: `image` padded to multiples of block_size by repeating its edges."""
    return learned.edge_padded_tf(image, tf.shape(image), self.model.block_size)

  @staticmethod
  def _to_image(x_hat, shape):
    return tf.saturate_cast(tf.round(x_hat[0, :shape[0], :shape[1]]), tf.uint8)

  @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8, name="image")])
  def compress(self, image):
    return {"strings_bytes": tf.stack(self.model.compress(self.padded(image))),
            "shape": tf.shape(image, out_type=tf.int32)[:2]}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="strings_bytes"),
                                tf.TensorSpec([2], tf.int32, name="shape")])
  def decompress(self, strings_bytes, shape):
    count = len(self.model.stream_names)
    tf.debugging.assert_equal(tf.size(strings_bytes), count,
                              message=f"expected {count} strings {self.model.stream_names}")
    tf.debugging.assert_greater(shape, 0, message="image sides must be positive")
    tf.debugging.assert_less_equal(shape, container.MAX_SIDE, message="image side too large")
    x_hat = self.model.decompress([strings_bytes[i] for i in range(count)], *learned.padded_size(
        shape[0], shape[1], self.model.block_size))
    return {"image": self._to_image(x_hat, shape)}

  @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8, name="image")])
  def estimate(self, image):
    out = self.model(self.padded(image), training=False)
    return {"bits": out["bits"][0], "image": self._to_image(out["x_hat"], tf.shape(image))}


class LossyModelCodec(learned.ModelCodec):
  """A zoo codec around a compressible lossy model stored as a models.save .npz."""

  lossless = False
  unsupported_hint = ("; convert it first (drop the alpha channel, reduce to 8 bits), or code "
                      "it losslessly with --model fixedpred-v1")

  def __init__(self, name, weights_path):
    super().__init__(name, weights_path)
    # Models that freeze their coding tables after training (make_compressible) say
    # whether they have; the others carry their tables in every checkpoint.
    if hasattr(self.model, "make_compressible") and not self.model.compression:
      raise ValueError(f"{weights_path} holds a model without frozen range-coding tables; "
                       "write a coding-ready copy with tools/freeze.py")
    self.serving = Serving(self.model)
    self.graph_coding = getattr(self.model, "graph_coding", True)
    self.refines = getattr(self.model, "refines", hasattr(self.model, "refine_latents"))
    # Not on Serving: a SavedModel serves only the plain encoder.
    self._compress_latents = tf.function(
        lambda y, z: tf.stack(self.model.compress_latents(y, z)), reduce_retracing=True)
    self._estimate_latents = tf.function(self._estimate_latents_fn, reduce_retracing=True)
    self._decompress_latents = tf.function(
        lambda strings, hp, wp: self.model.decompress_latents(
            [strings[i] for i in range(len(self.model.stream_names))], hp, wp),
        reduce_retracing=True)

  @staticmethod
  def _rgb(image):
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image

  @staticmethod
  def _as_channels(rgb, channels):
    rgb = np.asarray(rgb)
    if channels == 1:
      return np.rint(rgb.mean(axis=-1, keepdims=True)).astype(np.uint8)
    return rgb

  def _tiles(self, image):
    """((top, left, height, width), RGB tile) of each tile of `image`, in raster order."""
    for top, left, h, w in tile_boxes(*image.shape[:2], TILE):
      yield (top, left, h, w), self._rgb(image[top:top + h, left:left + w])

  def _refined_latents(self, tile, refine_steps):
    return self.model.refine_latents(self.serving.padded(tile), refine_steps)

  def _compress_tile(self, tile, refine_steps):
    if not self.graph_coding:
      return self.model.compress(self.padded(tile))
    if not refine_steps:
      return self.serving.compress(tile)["strings_bytes"].numpy()
    return self._compress_latents(*self._refined_latents(tf.constant(tile), refine_steps)).numpy()

  def compress(self, image, refine_steps=0):
    """Sections of `image`; with refine_steps, each tile's latents are first fitted to it
    (the model's `refine_latents`), which only the encoder does. `codecs.compress` checks
    that the model `refines`."""
    tiles = [self._compress_tile(t, refine_steps) for _, t in self._tiles(image)]
    if len(tiles) == 1:
      return dict(zip(self.model.stream_names, tiles[0]))
    return {name: container.pack_chunks([t[i] for t in tiles])
            for i, name in enumerate(self.model.stream_names)}

  def _tile_strings(self, sections, geometry):
    """[((top, left, height, width), strings of the tile)] of a file's sections."""
    names = self.model.stream_names
    if set(sections) != set(names):
      raise container.FormatError(f"expected sections {sorted(names)}, found "
                                  f"{sorted(sections)}")
    self.check_geometry(geometry)
    boxes = tile_boxes(geometry.height, geometry.width, TILE)
    per_stream = ([[sections[n]] for n in names] if len(boxes) == 1 else
                  [container.unpack_chunks(sections[n], len(boxes), n) for n in names])
    return [(box, tf.constant([strings[i] for strings in per_stream]))
            for i, box in enumerate(boxes)]

  def decompress(self, sections, geometry):
    rgb = np.empty((geometry.height, geometry.width, 3), np.uint8)
    for (top, left, h, w), strings in self._tile_strings(sections, geometry):
      if self.graph_coding:
        tile = self.serving.decompress(strings, tf.constant([h, w], tf.int32))["image"]
      else:
        x_hat = self.model.decompress(strings, *learned.padded_size(h, w,
                                                                    self.model.block_size))
        tile = Serving._to_image(x_hat, (h, w))
      rgb[top:top + h, left:left + w] = tile.numpy()
    return self._as_channels(rgb, geometry.channels)

  def decompress_latents(self, sections, geometry):
    """[latents of each tile] (numpy, raster order): what the entropy decoder recovers
    from a file's sections before synthesis; identical on every machine."""
    latents = []
    for (_, _, h, w), strings in self._tile_strings(sections, geometry):
      hp, wp = learned.padded_size(h, w, self.model.block_size)
      latents.append(self._decompress_latents(strings, hp, wp).numpy())
    return latents

  def _estimate_latents_fn(self, tile, y, z):
    out = self.model(self.serving.padded(tile), training=False, latents=(y, z))
    return {"bits": out["bits"][0], "image": Serving._to_image(out["x_hat"], tf.shape(tile))}

  def _estimate_tile(self, tile, refine_steps):
    if not refine_steps:
      return self.serving.estimate(tile)
    tile = tf.constant(tile)
    return self._estimate_latents(tile, *self._refined_latents(tile, refine_steps))

  def estimate(self, image, refine_steps=0):
    """Estimated bits and the reconstruction, through the model's non-coding path (tile by
    tile, as `compress` codes); with refine_steps, of the latents `compress` would code
    with as many steps."""
    self.check_image(image)
    bits, rgb = 0.0, np.empty(image.shape[:2] + (3,), np.uint8)
    for (top, left, h, w), tile in self._tiles(image):
      out = self._estimate_tile(tile, refine_steps)
      bits += float(out["bits"])
      rgb[top:top + h, left:left + w] = out["image"].numpy()
    return {"bits": bits, "x_hat": self._as_channels(rgb, image.shape[2])}
