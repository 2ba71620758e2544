"""`tfcomp serve`: TensorFlow Serving's REST API over exported models, through real HTTP."""
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

from tfcomp import serve, testing

import helpers

CAP = 64 << 10  # the test server's request cap: a compress request fits, 100 KiB does not


class _Echo(tf.Module):
  """A small SavedModel of every kind of input and output the server converts."""

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="data"),
                                tf.TensorSpec([], tf.int32, name="times")])
  def echo(self, data, times):
    return {"echo_bytes": data, "text": data, "length": tf.strings.length(data) * times}

  @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
  def double(self, x):
    return {"y": 2 * x}

  @tf.function(input_signature=[tf.TensorSpec([], tf.string, name="png")])
  def decode(self, png):
    return {"shape": tf.shape(tf.io.decode_png(png))}

  @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8, name="image")])
  def checksum(self, image):
    return {"sum": tf.reduce_sum(tf.cast(image, tf.int64))}


@pytest.fixture(scope="module")
def echo_dir(tmp_path_factory):
  """DIR/echo/1 and DIR/echo/3, the same model: version 3 is served."""
  root = tmp_path_factory.mktemp("echo_models")
  module = _Echo()
  tf.saved_model.save(module, str(root / "echo" / "1"), signatures={
      n: getattr(module, n) for n in ("echo", "double", "decode", "checksum")})
  shutil.copytree(root / "echo" / "1", root / "echo" / "3")
  return root


@pytest.fixture(scope="module")
def tiny_codec(tmp_path_factory):
  return helpers.tiny_lossy_codec(tmp_path_factory.mktemp("hyperprior") / "tiny.npz")


@pytest.fixture(scope="module")
def tiny_lossless_codec(tmp_path_factory):
  return helpers.tiny_lossless_codec("l3c", tmp_path_factory.mktemp("l3c") / "tiny.npz")


@pytest.fixture(scope="module")
def url(tmp_path_factory, echo_dir, tiny_codec, tiny_lossless_codec):
  """The base URL of a server over echo, the tiny lossy model (tiny/1) and the tiny
  lossless one (lossless/1), in a thread."""
  root = tmp_path_factory.mktemp("models")
  shutil.copytree(echo_dir / "echo", root / "echo")
  helpers.tool("export").export(tiny_codec, str(root / "tiny" / "1"))
  helpers.tool("export").export(tiny_lossless_codec, str(root / "lossless" / "1"))
  server = serve.make_server(str(root), "127.0.0.1", 0, max_concurrent=3,
                             max_request_bytes=CAP)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield server.url
  server.shutdown()
  server.server_close()
  thread.join(10)


def call(url, path, body=None, method=None):
  """(status, JSON answer) of one request; `body` a JSON value, or bytes sent as they are."""
  data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
  request = urllib.request.Request(url + path, data=data, method=method,
                                   headers={"Content-Type": "application/json"})
  try:
    with urllib.request.urlopen(request, timeout=120) as response:
      return response.status, json.loads(response.read())
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read())


def b64(data):
  return {"b64": base64.b64encode(data).decode()}


def unb64(value):
  """The bytes of a string output: {"b64": ...} or UTF-8 text."""
  return base64.b64decode(value["b64"]) if isinstance(value, dict) else value.encode()


GOOD = ("/v1/models/echo:predict", {"signature_name": "double", "inputs": [[1, 2.5]]})


def test_status_and_metadata_are_tf_servings(url):
  assert call(url, "/v1/models/echo") == (200, {"model_version_status": [
      {"version": "3", "state": "AVAILABLE", "status": {"error_code": "OK",
                                                        "error_message": ""}}]})
  assert call(url, "/v1/models/echo/versions/3")[0] == 200
  status, meta = call(url, "/v1/models/tiny/metadata")
  assert status == 200 and meta["model_spec"] == {"name": "tiny", "signature_name": "",
                                                  "version": "1"}
  signatures = meta["metadata"]["signature_def"]["signature_def"]
  assert {"compress", "decompress"} <= set(signatures)
  (image,) = signatures["compress"]["inputs"].values()
  assert image["dtype"] == "DT_UINT8" and image["name"].endswith(":0")
  assert [d["size"] for d in image["tensor_shape"]["dim"]] == ["-1", "-1", "3"]
  assert signatures["compress"]["method_name"] == "tensorflow/serving/predict"
  assert "DT_STRING" in {t["dtype"] for t in signatures["decompress"]["inputs"].values()}
  echo = call(url, "/v1/models/echo/versions/3/metadata")[1]["metadata"]["signature_def"]
  assert echo["signature_def"]["double"]["inputs"]["x"]["tensor_shape"]["dim"] == [
      {"size": "-1", "name": ""}, {"size": "2", "name": ""}]


def test_compress_and_decompress_over_http_decode_as_the_codec_does(url, tiny_codec):
  image = testing.smooth_image(20, 28, 3, seed=1)
  signatures = call(url, "/v1/models/tiny/metadata")[1]["metadata"]["signature_def"][
      "signature_def"]
  # The client passes compress's outputs to decompress as they are: the names match.
  assert set(signatures["compress"]["outputs"]) == set(signatures["decompress"]["inputs"])
  status, coded = call(url, "/v1/models/tiny:predict",
                       {"signature_name": "compress", "inputs": image.tolist()})
  assert status == 200, coded
  coded = coded["outputs"]
  for name, value in coded.items():
    if name.endswith("_bytes"):
      assert all(set(v) == {"b64"} for v in value), (name, value)
  status, decoded = call(url, "/v1/models/tiny:predict",
                         {"signature_name": "decompress", "inputs": coded})
  assert status == 200, decoded
  decoded = np.array(decoded["outputs"], np.uint8)  # the one output, bare

  serving = tiny_codec.serving
  (strings,) = [n for n, t in signatures["compress"]["outputs"].items()
                if t["dtype"] == "DT_STRING"]
  expected = serving.compress(image)
  sent = [unb64(v) for v in coded[strings]]
  assert sent == list(expected[strings].numpy())
  (shape,) = [n for n, t in signatures["compress"]["outputs"].items()
              if t["dtype"] == "DT_INT32"]
  args = [tf.constant(sent) if spec.dtype == tf.string else expected[shape]
          for spec in serving.decompress.input_signature]
  np.testing.assert_array_equal(decoded, serving.decompress(*args)["image"].numpy())
  assert decoded.shape == image.shape


def test_a_served_lossless_payload_is_the_file_the_codec_decodes(url, tiny_lossless_codec):
  from tfcomp import codecs  # pylint: disable=import-outside-toplevel
  from tfcomp.codecs import lossless  # pylint: disable=import-outside-toplevel
  codec = tiny_lossless_codec
  image = testing.smooth_image(19, 30, 3, seed=3)
  status, coded = call(url, "/v1/models/lossless:predict",
                       {"signature_name": "compress", "inputs": {"image": image.tolist()}})
  assert status == 200, coded
  strings = [unb64(v) for v in coded["outputs"]["strings_bytes"]]
  data = lossless.pack_served(codec.name, codec.weights_hash, strings, image)
  assert data == codecs.compress(image, codec)  # the file `tfcomp compress` writes
  decoded, _ = codecs.decompress(data, lambda _: codec)
  np.testing.assert_array_equal(decoded, image)
  status, served = call(url, "/v1/models/lossless:predict",
                        {"signature_name": "decompress", "inputs": coded["outputs"]})
  assert status == 200, served
  np.testing.assert_array_equal(np.array(served["outputs"], np.uint8), image)


def test_bytes_outputs_are_b64_and_other_strings_text_when_they_can(url):
  status, answer = call(url, "/v1/models/echo:predict", {
      "signature_name": "echo", "inputs": {"data": [b64(b"\xff\x00bin"), "text"], "times": 2}})
  assert status == 200, answer
  assert answer["outputs"] == {"echo_bytes": [b64(b"\xff\x00bin"), b64(b"text")],
                               "text": [b64(b"\xff\x00bin"), "text"], "length": [10, 8]}


def test_rows_and_columns_and_single_values(url):
  assert call(url, *GOOD) == (200, {"outputs": [[2.0, 5.0]]})
  assert call(url, "/v1/models/echo:predict", {
      "signature_name": "double", "inputs": {"x": [[1, 2], [3, 4]]}}) == (
          200, {"outputs": [[2.0, 4.0], [6.0, 8.0]]})
  assert call(url, "/v1/models/echo/versions/3:predict", {
      "signature_name": "double", "instances": [[1, 2], [3, 4]]}) == (
          200, {"predictions": [[2.0, 4.0], [6.0, 8.0]]})
  assert call(url, "/v1/models/echo:predict", {
      "signature_name": "double", "instances": [{"x": [0.5, 0]}]}) == (
          200, {"predictions": [[1.0, 0.0]]})


@pytest.mark.parametrize("path,body,status,message", [
    ("/v1/models/nope", None, 404, "Latest(nope)"),
    ("/v1/models/nope:predict", GOOD[1], 404, "Latest(nope)"),
    ("/v1/models/echo/versions/1:predict", GOOD[1], 404, "Specific(echo, 1)"),
    ("/v2/models/echo", None, 404, "unknown path"),
    ("/v1/models/echo:predict", None, 405, "takes POST"),
    ("/v1/models/echo", GOOD[1], 405, "takes GET"),
    ("/v1/models/echo:predict", {"signature_name": "nope", "inputs": 1}, 400, "nope"),
    ("/v1/models/echo:predict", {"inputs": [[1, 2]]}, 400, "serving_default"),
    ("/v1/models/echo:predict", b'{"signature_name": "double", "inputs": [[1, 2]]',
     400, "invalid JSON"),
    ("/v1/models/echo:predict", b"\xff\xfe\x00", 400, "invalid JSON"),
    ("/v1/models/echo:predict", [1, 2], 400, "JSON object"),
    ("/v1/models/echo:predict", {"signature_name": "double"}, 400, "\"inputs\""),
    ("/v1/models/echo:predict", {"signature_name": "double", "inputs": [[1, 2]],
                                 "instances": [[1, 2]]}, 400, "either"),
    ("/v1/models/echo:predict", {"signature_name": "echo", "inputs": {
        "data": ["a"], "tmies": 1}}, 400, "unknown tmies; missing times"),
    ("/v1/models/echo:predict", {"signature_name": "echo", "inputs": ["a"]}, 400,
     "takes 2 inputs"),
    ("/v1/models/echo:predict", {"signature_name": "echo", "inputs": {
        "data": [{"b64": "not base64!"}], "times": 1}}, 400, "invalid base64"),
    ("/v1/models/echo:predict", {"signature_name": "echo", "inputs": {
        "data": [7], "times": 1}}, 400, "takes strings"),
    ("/v1/models/echo:predict", {"signature_name": "echo", "inputs": {
        "data": ["a"], "times": 1.5}}, 400, "not fractional"),
    ("/v1/models/echo:predict", {"signature_name": "echo", "inputs": {
        "data": ["a"], "times": 2 ** 40}}, 400, "int32's"),
    ("/v1/models/echo:predict", {"signature_name": "double", "inputs": "x"}, 400,
     "not strings"),
    ("/v1/models/echo:predict", {"signature_name": "double", "inputs": [[1, 2, 3]]}, 400,
     "shape [1, 3]; the signature takes float32 [-1, 2]"),
    ("/v1/models/echo:predict", {"signature_name": "double", "inputs": [[1, 2], [3]]}, 400,
     "ragged"),
    ("/v1/models/echo:predict", {"signature_name": "checksum", "inputs": [[[300, 0, 0]]]},
     400, "outside uint8's [0, 255]"),
    ("/v1/models/echo:predict", {"signature_name": "echo", "instances": [
        {"data": ["a"], "times": 1}]}, 400, "has shape [1"),
    ("/v1/models/echo:predict", {"signature_name": "decode", "inputs": b64(b"not a png")},
     400, "decode: "),
    ("/v1/models/echo:predict", b"[" * 20000 + b"]" * 20000, 400, "invalid JSON"),
    ("/v1/models/echo:predict", b" " * (100 << 10), 413, "over the cap"),
])
def test_bad_requests_get_their_status_and_the_server_goes_on(url, path, body, status,
                                                                message):
  got, answer = call(url, path, body)
  assert got == status and message in answer["error"], answer
  assert call(url, *GOOD) == (200, {"outputs": [[2.0, 5.0]]})


def test_undecodable_strings_to_decompress_are_a_bad_request(url):
  rng = np.random.default_rng(0)
  inputs = call(url, "/v1/models/tiny/metadata")[1]["metadata"]["signature_def"][
      "signature_def"]["decompress"]["inputs"]
  for strings in ([rng.bytes(40), rng.bytes(9)], [b"x"]):
    request = {n: ([b64(s) for s in strings] if t["dtype"] == "DT_STRING" else [20, 28])
               for n, t in inputs.items()}
    status, answer = call(url, "/v1/models/tiny:predict",
                          {"signature_name": "decompress", "inputs": request})
    assert status == 400 and "assertion failed" in answer["error"], answer
    assert "[[" not in answer["error"]  # the graph's node, of no use to a client
  assert call(url, *GOOD)[0] == 200


def test_concurrent_requests_all_succeed_alike(url):
  body = {"signature_name": "compress", "inputs": testing.smooth_image(24, 16, 3).tolist()}
  results, errors = [], []

  def client():
    try:
      for _ in range(3):
        results.append(call(url, "/v1/models/tiny:predict", body))
    except Exception as e:  # pylint: disable=broad-except
      errors.append(e)

  threads = [threading.Thread(target=client) for _ in range(8)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(120)
  assert not errors and len(results) == 24
  assert all(r == results[0] for r in results) and results[0][0] == 200


def test_the_layout_is_checked_naming_the_offender(tmp_path, echo_dir):
  (tmp_path / "empty").mkdir()
  (tmp_path / "unversioned" / "m" / "latest").mkdir(parents=True)
  for argv, status, message in (
      (["--model_dir", tmp_path / "missing"], 1, f"{tmp_path / 'missing'}: no such folder"),
      (["--model_dir", tmp_path / "empty"], 1, "no models in it"),
      (["--model_dir", tmp_path / "unversioned"], 1,
       f"{tmp_path / 'unversioned' / 'm'}: no version folder"),
      (["--model_dir", echo_dir / "echo" / "3"], 1, "is a SavedModel itself"),
      (["--model_dir", echo_dir, "--port", "70000"], 2, "--port 70000"),
      (["--model_dir", echo_dir, "--max_concurrent", "0"], 2, "--max_concurrent 0")):
    got, out, err = helpers.run_cli("serve", *argv)
    assert (got, out) == (status, "") and message in err and err.count("\n") == 1, err


def test_help_and_usage_errors_start_without_tensorflow():
  script = ("import sys; from tfcomp import cli; status = cli.main(sys.argv[1:]); "
            "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'; "
            "sys.exit(status)")
  for argv, status in ((["serve", "--help"], 0),
                       (["serve", "--model_dir", ".", "--port", "-1"], 2)):
    result = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == status, (argv, result.stderr)


def test_the_command_serves_until_sigterm(echo_dir):
  process = subprocess.Popen(
      [sys.executable, "-m", "tfcomp_cli", "serve", "--model_dir", str(echo_dir), "--port",
       "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  watchdog = threading.Timer(180, process.kill)  # a hung server fails the test, not the run
  watchdog.start()
  try:
    line = process.stdout.readline()
    match = re.fullmatch(r"serving echo \(version 3: checksum, decode, double, echo\) on "
                         r"(http://127\.0\.0\.1:\d+)\n", line)
    assert match, (line, process.stderr.read() if process.poll() is not None else "")
    assert call(match[1], "/v1/models/echo")[0] == 200
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0
    assert process.stderr.read() == ""
  finally:
    watchdog.cancel()
    if process.poll() is None:
      process.kill()
      process.wait()


def test_bench_serve_prints_a_table(echo_dir, tmp_path):
  bench_serve = helpers.tool("bench_serve")
  out = tmp_path / "table.md"
  rows = bench_serve.main(["bench_serve.py", "--model_dir", str(echo_dir), "--signature",
                           "checksum", "--clients", "1,2", "--requests", "3", "--out",
                           str(out)])
  assert [(r["clients"], r["requests"], r["errors"]) for r in rows] == [(1, 3, 0), (2, 3, 0)]
  assert all(r["requests_per_s"] > 0 and r["p99_ms"] >= r["p50_ms"] > 0 for r in rows)
  table = out.read_text()
  assert "| clients |" in table and table.count("\n| ") >= 3, table
