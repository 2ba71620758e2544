"""A learned lossless model (L3C, SReC) as SavedModel functions: one RGB image, one tile.

    compress(image uint8 [H, W, 3]) -> {"strings_bytes": string [N], "shape": int32 [2]}
    decompress(strings_bytes string [N], shape int32 [2]) -> {"image": uint8 [H, W, 3]}

N is the model's `num_streams`. The strings are exactly the streams that
tfcomp.codecs.lossless writes at the default effort for the image's one tile when it codes
that tile through the model: the same padding to `block_size` by edge repetition, the same
coder adaptation (lossless.SERVED_ADAPTATION, for models whose coder adapts), and the
model's own coding loop, traced. Sides over lossless.TILE are refused with an InvalidArgumentError:
the file codec cuts larger images into tiles, and a client of a served model does the same.

What the file codec adds, and a served model leaves to its client:
  * the PNG fallback, a policy of the file codec: it stores a tile as PNG where that is
    smaller than the model's streams, which a served model always returns;
  * grayscale images, which the file codec codes as one channel (served: RGB only);
  * the container: lossless.pack_served wraps served strings and their image into the
    bytes of a .tfc file, and lossless.unpack_served takes them back out.
String tensors are named *_bytes, so that TF Serving's REST API carries them base64-encoded
({"b64": ...}).
"""
import tensorflow as tf

from tfcomp.codecs import learned
from tfcomp.entropy.uniform import in_range

CHANNELS = 3


class Serving(tf.Module):
  """compress / decompress of one RGB image of at most `tile` x `tile` as traced functions.

  The file codec that serves its model makes it (lossless.LosslessModelCodec.serving), with
  its tile side and the keyword arguments it codes a tile with (`coding`: the adaptation
  of the default effort, or none), so that the strings are that codec's streams.
  """

  def __init__(self, model, tile, coding):
    super().__init__(name="tfcomp_lossless_serving")
    # A SavedModel of this module needs the model's variables and the functions below. A
    # tracked Keras model would bring every layer's own traced functions along (several
    # times the saving time, twice the size), so the model is set past attribute tracking.
    self.model_weights = list(model.weights)
    object.__setattr__(self, "model", model)
    self.tile = int(tile)
    # The coding loops' keyword arguments: plain data, kept out of tracking as the model is.
    object.__setattr__(self, "_coding", dict(coding))

  def _checked(self, shape):
    """`shape` [2], once both sides lie in [1, tile]; InvalidArgumentError naming them."""
    checks = [
        tf.debugging.assert_positive(shape, message="image sides must be positive"),
        tf.debugging.assert_less_equal(
            shape, self.tile, message=f"a served model codes one tile: image sides "
            f"must be at most {self.tile} (the file codec tiles larger images)")]
    with tf.control_dependencies(checks):
      return tf.identity(shape)

  def padded(self, image, shape):
    """[1, Hp, Wp, 3]: `image` of `shape` padded to multiples of block_size by repeating its
    last row and column (the file codec's learned.ModelCodec.padded, in TF ops)."""
    return learned.edge_padded_tf(image, shape, self.model.block_size)

  @tf.function(input_signature=[tf.TensorSpec([None, None, CHANNELS], tf.uint8, name="image")])
  def compress(self, image):
    # Everything below depends on the checked shape: a refused image is not coded first.
    shape = self._checked(tf.shape(image, out_type=tf.int32)[:2])
    streams = self.model.compress(self.padded(image, shape), shape[0], shape[1], CHANNELS,
                                  **self._coding)
    return {"strings_bytes": tf.stack(streams), "shape": shape}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="strings_bytes"),
                                tf.TensorSpec([2], tf.int32, name="shape")])
  def decompress(self, strings_bytes, shape):
    count = self.model.num_streams
    check = tf.debugging.assert_equal(
        tf.size(strings_bytes), count,
        message=f"expected {count} strings, the model's streams coarse to fine")
    with tf.control_dependencies([check]):
      strings_bytes = tf.identity(strings_bytes)
    shape = self._checked(shape)
    height, width = shape[0], shape[1]
    levels = self.model.decompress(
        [strings_bytes[i] for i in range(count)],
        learned.padded_size(height, width, self.model.block_size), height, width, CHANNELS,
        **self._coding)
    # Damaged strings can decode to anything; the file codec's pixel CRC catches what this
    # range check lets through.
    levels = in_range(levels, 256, "decoded pixels outside [0, 256): the strings are damaged")
    return {"image": tf.cast(levels[0], tf.uint8)}
