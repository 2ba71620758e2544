"""tools/export.py: SavedModels of every learned family, loaded in a fresh process.

A fresh process stands in for TensorFlow Serving: it has only tfcomp's ops and the
SavedModel, and calls the signatures by their input names, as the REST API does.
"""
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from tfcomp import codecs, container, testing, zoo
from tfcomp.codecs import lossless

import helpers

SIGNATURES = {"compress": (["image"], ["shape", "strings_bytes"]),
              "decompress": (["shape", "strings_bytes"], ["image"])}

_FRESH_PROCESS = r"""
import pickle, sys
import numpy as np
import tfcomp
import tensorflow as tf
tfcomp.register_ops()
served = tf.saved_model.load(sys.argv[1])
with open(sys.argv[2], "rb") as f:
  images, large = pickle.load(f)
compress, decompress = served.signatures["compress"], served.signatures["decompress"]

def error_of(call):
  try:
    call()
  except tf.errors.InvalidArgumentError as e:
    return e.message
  return None

def code(image):
  coded = compress(image=tf.constant(image))
  return coded["strings_bytes"], coded["shape"]

coded = [code(image) for image in images]
strings, shape = coded[0]
halves = tf.constant([s[:len(s) // 2] for s in strings.numpy()])
garbage = tf.fill(tf.shape(strings), b"\x5a\x0f" * 20)
result = {
    "strings": [[bytes(s) for s in each.numpy()] for each, _ in coded],
    "shapes": [sides.numpy() for _, sides in coded],
    "images": [decompress(strings_bytes=each, shape=sides)["image"].numpy()
               for each, sides in coded],
    "signatures": {name: (sorted(f.structured_input_signature[1]), sorted(f.structured_outputs))
                   for name, f in served.signatures.items()},
    "large": None if large is None else error_of(lambda: compress(image=tf.constant(large))),
    "truncated": error_of(lambda: decompress(strings_bytes=halves, shape=shape)),
    "garbage": error_of(lambda: decompress(strings_bytes=garbage, shape=shape)),
    "missing": error_of(lambda: decompress(strings_bytes=strings[:-1], shape=shape)),
}
with open(sys.argv[3], "wb") as f:
  pickle.dump(result, f)
"""


def _export(argv, out):
  export = helpers.tool("export")
  export.main(["export.py", *argv, "--out", str(out)])
  # All or nothing: the staging directory became `out`, and nothing else is left.
  assert os.listdir(os.path.dirname(out)) == [os.path.basename(out)]
  return export


def _serve(saved, images, tmp_path, large=None):
  """What the SavedModel at `saved` does with `images` (and `large`) in a fresh process;
  the damaged strings are the first image's."""
  with open(tmp_path / "inputs.pkl", "wb") as f:
    pickle.dump((images, large), f)
  subprocess.run([sys.executable, "-c", _FRESH_PROCESS, str(saved), str(tmp_path / "inputs.pkl"),
                  str(tmp_path / "result.pkl")], check=True, timeout=300,
                 env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  with open(tmp_path / "result.pkl", "rb") as f:
    result = pickle.load(f)
  assert result["signatures"] == SIGNATURES
  for image, shape in zip(images, result["shapes"]):
    np.testing.assert_array_equal(shape, image.shape[:2])
  assert result["missing"] and "expected" in result["missing"]
  return result


def _model_streams(codec, image):
  """The streams of the file codec's one model tile of `image`, at the default effort (the
  one a served model codes at)."""
  mode, *streams = container.split_chunks(codec.compress(image)[lossless.SECTION])
  assert mode == lossless.model_mode(lossless.SERVED_ADAPTATION) == lossless.ADAPTIVE + bytes([7])
  return streams


@pytest.mark.parametrize("family", ["hyperprior", "hific"])
def test_lossy_export_codes_like_the_codec_in_a_fresh_process(family, tmp_path):
  weights = tmp_path / "tiny.npz"
  codec = helpers.tiny_lossy_codec(weights, family)
  out = tmp_path / "exports" / "saved"
  export = _export(["--weights", str(weights)], out)
  with pytest.raises(Exception, match="exists"):
    export.main(["export.py", "--weights", str(weights), "--out", str(out)])

  image = testing.smooth_image(37, 70, 3, seed=5)
  result = _serve(out, [image], tmp_path)
  sections = codec.compress(image)
  assert result["strings"] == [[sections["y"], sections["z"]]]
  np.testing.assert_array_equal(result["images"][0], codec.estimate(image)["x_hat"])
  # tensorflow-compression's range decoder refuses garbage; a truncated string decodes to
  # some image or is refused, as the (randomly initialized) weights make it: an error or
  # an image, never a dead process.
  assert result["garbage"]
  assert result["truncated"] is None or "entropy_model" in result["truncated"]


@pytest.mark.parametrize("family", sorted(helpers.TINY_LOSSLESS))
def test_lossless_export_codes_one_tile_like_the_codec_in_a_fresh_process(family, tmp_path):
  codec = helpers.tiny_lossless_codec(family, tmp_path / "tiny.npz")
  out = tmp_path / "exports" / "saved"
  _export(["--weights", str(tmp_path / "tiny.npz")], out)
  images = [testing.smooth_image(h, w, 3, seed=h) for h, w in ((7, 13), (1, 1), (33, 65))]
  large = np.zeros((2, lossless.TILE + 1, 3), np.uint8)
  result = _serve(out, images, tmp_path, large)
  for image, strings, decoded in zip(images, result["strings"], result["images"]):
    assert strings == _model_streams(codec, image)
    np.testing.assert_array_equal(decoded, image)
    # What a client makes of the strings is the file the codec writes, and back.
    data = lossless.pack_served(codec.name, codec.weights_hash, strings, image)
    assert data == codecs.compress(image, codec)
    _, unpacked, shape = lossless.unpack_served(data)
    assert unpacked == strings
    np.testing.assert_array_equal(shape, image.shape[:2])
  assert f"at most {lossless.TILE}" in result["large"] and "1025" in result["large"]
  assert "corrupted or truncated stream" in result["truncated"]
  assert "corrupted stream" in result["garbage"]


@pytest.mark.slow  # ~50 s to trace and save the full network; the tiny SReC runs its code
def test_the_default_model_exports_and_serves_what_tfcomp_compress_writes(tmp_path):
  out = tmp_path / "exports" / "saved"
  _export(["--model", zoo.DEFAULT], out)
  image = testing.photo_mosaic(33, 65)
  result = _serve(out, [image], tmp_path)
  codec = zoo.load(zoo.DEFAULT)
  data = lossless.pack_served(codec.name, codec.weights_hash, result["strings"][0], image)
  # The model beats PNG on this tile, so the file codec stored it as the served strings.
  assert data == codecs.compress(image, codec)
  np.testing.assert_array_equal(result["images"][0], image)


def test_models_without_a_network_are_refused():
  export = helpers.tool("export")
  with pytest.raises(Exception, match="fixedpred-v1 does not export as a SavedModel"):
    export.main(["export.py", "--model", zoo.UNIVERSAL, "--out", "unused"])


def test_served_files_refuse_what_a_served_model_does_not_code(tmp_path):
  codec = helpers.tiny_lossless_codec("l3c", tmp_path / "tiny.npz")
  image = testing.smooth_image(9, 5, 3, seed=1)
  streams = _model_streams(codec, image)
  data = lossless.pack_served(codec.name, codec.weights_hash, streams, image)
  assert data == codecs.compress(image, codec)
  with pytest.raises(ValueError, match=r"more than one tile"):
    lossless.pack_served(codec.name, codec.weights_hash, streams,
                         np.zeros((3, lossless.TILE + 1, 3), np.uint8))
  with pytest.raises(ValueError, match=r"uint8 \[h, w, 3\].*\(9, 5, 1\)"):
    lossless.pack_served(codec.name, codec.weights_hash, streams, image[..., :1])
  with pytest.raises(container.FormatError, match="gray"):
    lossless.unpack_served(codecs.compress(image[..., :1], codec))
  with pytest.raises(container.FormatError, match="coded with adaptation none, the served "
                     "model's with bias"):
    lossless.unpack_served(codecs.compress(image, codec, effort=1))
  png = codecs.compress(image, lossless.LosslessModelCodec(codec.name, codec.weights_path))
  assert lossless.tile_modes(container.read(png).sections, container.read(png).geometry) == [
      lossless.PNG]
  with pytest.raises(container.FormatError, match="stored as PNG"):
    lossless.unpack_served(png)
