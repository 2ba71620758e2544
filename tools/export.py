"""Exports a learned tfcomp model as a SavedModel serving `compress` and `decompress`.

    python tools/export.py --model hyperprior-ms-v5-q2 --out exported/hyperprior-ms-v5-q2
    python tools/export.py --model srec-small-v5 --out exported/srec-small-v5
    python tools/export.py --weights runs/hp/model_compressible.npz --out exported/hp

Signatures (one RGB image per call):

  lossy models (hyperprior, imgcomp; sides padded and cropped as in tfcomp.codecs.lossy):
    compress(image: uint8 [H, W, 3]) -> strings_bytes: string [S], shape: int32 [2]
    decompress(strings_bytes: string [S], shape: int32 [2]) -> image: uint8 [H, W, 3]
  S strings, one per stream of the model (hyperprior: y, z). They are the very functions
  the `tfcomp` codec runs, so the strings are the payload of a .tfc file of the same model.

  lossless models (srec, l3c; see tfcomp.codecs.lossless_serving):
    compress(image: uint8 [H, W, 3]) -> strings_bytes: string [N], shape: int32 [2]
    decompress(strings_bytes: string [N], shape: int32 [2]) -> image: uint8 [H, W, 3]
  The image is one tile: sides up to tfcomp.codecs.lossless.TILE (larger ones are refused),
  and the N strings are the streams the `tfcomp` codec writes for that tile through the
  model (its PNG fallback is the file codec's policy, not the served model's).
  lossless.pack_served makes them into a .tfc file, lossless.unpack_served takes them back.

Strings are named *_bytes so that TF Serving's REST API carries them base64-encoded. To use
the export, a fresh process needs only

    import tfcomp, tensorflow as tf
    tfcomp.register_ops()
    served = tf.saved_model.load(path)
    coded = served.compress(image)
    image_hat = served.decompress(coded["strings_bytes"], coded["shape"])["image"]

(`tfcomp.register_ops()` registers the ops the graph uses: tensorflow-compression's range
coders and tfcomp's own, of its exact arithmetic). fixedpred-v1 has no network and no
SavedModel: its codec runs in-process.
"""
import os
import shutil
import tempfile

from absl import app, flags

import toolbox  # first: it puts the repository on the path and imports tfcomp
import tensorflow as tf  # pylint: disable=wrong-import-order

FLAGS = flags.FlagValues()
flags.DEFINE_string("model", None, "zoo model name (see `tfcomp models`)", flag_values=FLAGS)
flags.DEFINE_string("weights", None, "a learned model .npz, lossy ones compressible "
                    "(instead of --model)", flag_values=FLAGS)
flags.DEFINE_string("out", None, "the SavedModel directory to write (must not exist)",
                    flag_values=FLAGS)


def load_codec(model, weights):
  codec = toolbox.load_codec(model, weights)
  if not hasattr(codec, "serving"):
    raise app.UsageError(f"{codec.name} does not export as a SavedModel: only learned "
                         "models do (L3C, SReC, hyperprior, imgcomp); code with it "
                         f"in-process: tfcomp compress --model {codec.name}")
  if not getattr(codec.model, "graph_coding", True):
    raise app.UsageError(f"{codec.name} does not export as a SavedModel: its {codec.family} "
                         "coding runs outside TensorFlow's graph (its base layer codes "
                         f"through libheif); code with it in-process: tfcomp compress "
                         f"--model {codec.name}")
  return codec


def export(codec, out):
  """Writes the SavedModel of `codec` to the new directory `out`, all or nothing."""
  if os.path.exists(out):
    raise app.UsageError(f"{out} exists; give a new directory")
  parent = os.path.dirname(os.path.abspath(out))
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
  try:
    serving = codec.serving
    tf.saved_model.save(serving, staging, signatures={"compress": serving.compress,
                                                      "decompress": serving.decompress})
    os.rename(staging, out)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise


def main(argv):
  """Runs the tool on a full command line (program name first)."""
  argv = toolbox.parse(FLAGS, __doc__, argv)
  if argv is None:
    return
  if len(argv) != 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.out:
    raise app.UsageError("give --out DIR")
  codec = load_codec(FLAGS.model, FLAGS.weights)
  export(codec, FLAGS.out)
  print(f"{codec.name} -> {FLAGS.out} (signatures: compress, decompress)")


if __name__ == "__main__":
  toolbox.run(main)
