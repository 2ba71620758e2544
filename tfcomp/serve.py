"""TensorFlow Serving's REST API over a folder of SavedModels: `tfcomp serve`.

    tfcomp serve --model_dir DIR [--port 8501] [--host 127.0.0.1]

DIR is laid out as TF Serving's model base paths are, DIR/NAME/VERSION/saved_model.pb with
VERSION a positive integer; the highest version of each NAME is served, as TF Serving's
default version policy does. The endpoints are TF Serving's, so that a client written for
it works unchanged here and later against TF Serving itself:

    GET  /v1/models/NAME[/versions/V]            {"model_version_status": [...]}
    GET  /v1/models/NAME[/versions/V]/metadata   {"model_spec": ..., "metadata": ...}
    POST /v1/models/NAME[/versions/V]:predict    {"signature_name": S, "inputs": ...}
                                                 -> {"outputs": ...}

"inputs" (columns) is an object of the signature's inputs, or the bare value when it has
one; "instances" (rows) is a list of them, stacked along a new first axis, answered with
{"predictions": [...]}. Binary strings travel as {"b64": "..."}: outputs whose name ends
in `_bytes` always, other string outputs only when they are not UTF-8 text. A single
output is answered bare. Errors are {"error": message}: 400 for a bad request (what the
signature refuses included), 404 for an unknown model, version or path, 405, 411, 413 for
a body over the cap; 500 only for a failure of the server itself.
"""
import base64
import binascii
import dataclasses
import http.server
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback
import urllib.parse

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import saved_model_pb2

import tfcomp

DEFAULT_SIGNATURE = "serving_default"  # TF Serving's, for requests that name none
_MODEL = r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?"
_STATUS_OR_METADATA = re.compile(_MODEL + r"(?P<metadata>/metadata)?")
_PREDICT = re.compile(_MODEL + r":predict")
_API = ("GET /v1/models/NAME[/versions/V][/metadata], "
        "POST /v1/models/NAME[/versions/V]:predict")
# What a signature's op errors mean for the request: these are its inputs' fault (damaged
# bytes fail the decoders' checks with InvalidArgumentError); the rest, the server's.
_OP_ERROR_STATUS = {tf.errors.InvalidArgumentError: 400, tf.errors.OutOfRangeError: 400,
                    tf.errors.DataLossError: 400, tf.errors.FailedPreconditionError: 400,
                    tf.errors.ResourceExhaustedError: 503}


class HttpError(Exception):
  """A request's failure: its HTTP status, the message of its {"error": ...} body and any
  headers to send."""

  def __init__(self, status, message, headers=None):
    super().__init__(message)
    self.status = status
    self.message = message
    self.headers = headers or {}


def _bad(message):
  return HttpError(400, message)


def find_models(model_dir):
  """{NAME: (version, path)} of the highest version of each model in `model_dir`.

  Raises:
    ValueError: naming the folder that is not laid out as DIR/NAME/VERSION/saved_model.pb.
  """
  if not os.path.isdir(model_dir):
    raise ValueError(f"--model_dir {model_dir}: no such folder")
  layout = "lay models out as DIR/NAME/VERSION/saved_model.pb, VERSION a positive integer"
  if os.path.isfile(os.path.join(model_dir, "saved_model.pb")):
    raise ValueError(f"--model_dir {model_dir} is a SavedModel itself; {layout}")
  found = {}
  for name in sorted(os.listdir(model_dir)):
    folder = os.path.join(model_dir, name)
    # Files (a README) and hidden folders (tools/export.py's staging) are not models.
    if name.startswith(".") or not os.path.isdir(folder):
      continue
    if ":" in name:  # it would end the model's name in the URL
      raise ValueError(f"{folder}: a model name cannot contain ':'")
    versions = [(int(v), v) for v in os.listdir(folder)
                if v.isdigit() and int(v) > 0 and os.path.isdir(os.path.join(folder, v))]
    if not versions:
      raise ValueError(f"{folder}: no version folder in it; {layout}")
    version, entry = max(versions)
    path = os.path.join(folder, entry)
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
      raise ValueError(f"{path}: no saved_model.pb in it; {layout}")
    found[name] = (version, path)
  if not found:
    raise ValueError(f"--model_dir {model_dir}: no models in it; {layout}")
  return found


@dataclasses.dataclass
class Model:
  """One served version of a SavedModel."""
  name: str
  version: int
  path: str
  loaded: object  # kept: the signatures' functions live on it
  signature_defs: dict  # each SignatureDef as TF Serving's JSON prints it

  @classmethod
  def load(cls, name, version, path):
    try:
      loaded = tf.saved_model.load(path)
    except Exception as e:  # pylint: disable=broad-except
      raise ValueError(f"{path}: cannot load the SavedModel: {_first_line(e)}") from e
    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
      saved.ParseFromString(f.read())
    # TF Serving prints the protos as they are (the graph's tensor names, __saved_model_init_op
    # included), int64 sizes as strings and empty fields too.
    graph = ([g for g in saved.meta_graphs if "serve" in g.meta_info_def.tags] or
             list(saved.meta_graphs))[0]
    defs = {k: json_format.MessageToDict(v, preserving_proto_field_name=True,
                                         including_default_value_fields=True)
            for k, v in graph.signature_def.items()}
    return cls(name, version, path, loaded, defs)

  def status(self):
    return {"model_version_status": [{"version": str(self.version), "state": "AVAILABLE",
                                      "status": {"error_code": "OK", "error_message": ""}}]}

  def metadata(self):
    return {"model_spec": {"name": self.name, "signature_name": "",
                           "version": str(self.version)},
            "metadata": {"signature_def": {"signature_def": self.signature_defs}}}

  def predict(self, request):
    """The response to the JSON `request` of a :predict."""
    if not isinstance(request, dict):
      raise _bad("the request must be a JSON object with \"inputs\" or \"instances\"")
    name = request.get("signature_name") or DEFAULT_SIGNATURE
    if not isinstance(name, str) or name not in self.loaded.signatures:
      raise _bad(f"signature {json.dumps(name)} not found in model {self.name}; it has "
                 f"{', '.join(sorted(self.loaded.signatures)) or 'none'}")
    function = self.loaded.signatures[name]
    specs = function.structured_input_signature[1]
    columns, rows = _columns(request, specs)
    unknown, missing = sorted(set(columns) - set(specs)), sorted(set(specs) - set(columns))
    if unknown or missing:
      raise _bad(f"signature {name} takes inputs {', '.join(sorted(specs))}: " + "; ".join(
          f"{what} {', '.join(names)}" for what, names in (("unknown", unknown),
                                                            ("missing", missing)) if names))
    tensors = {k: _tensor(k, v, specs[k]) for k, v in columns.items()}
    try:
      result = function(**tensors)
    except tf.errors.OpError as e:
      status = next((s for kind, s in _OP_ERROR_STATUS.items() if isinstance(e, kind)), 500)
      raise HttpError(status, f"{name}: {_op_message(e)}") from None
    outputs = {k: _json_value(k, v) for k, v in result.items()}
    if rows is None:
      return {"outputs": next(iter(outputs.values())) if len(outputs) == 1 else outputs}
    for k, v in result.items():
      if v.shape.rank == 0 or v.shape[0] != rows:
        raise _bad(f"output {k} has shape {v.shape.as_list()}, not {rows} rows as "
                   "\"instances\" need; send \"inputs\" (columns) instead")
    if len(outputs) == 1:
      return {"predictions": next(iter(outputs.values()))}
    return {"predictions": [{k: v[i] for k, v in outputs.items()} for i in range(rows)]}


def _first_line(error):
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__


def _op_message(error):
  """The line that says what went wrong, without the graph's node and stack boilerplate."""
  text = error.message.split("\n\t [[")[0].strip()
  return text.splitlines()[-1] if text else type(error).__name__


def _is_b64(value):
  return isinstance(value, dict) and set(value) == {"b64"}


def _columns(request, specs):
  """({input name: JSON value}, rows: None for "inputs", else the number of instances)."""
  if ("inputs" in request) == ("instances" in request):
    raise _bad("give either \"inputs\" (columns) or \"instances\" (rows)")
  named = lambda value: isinstance(value, dict) and not _is_b64(value)  # noqa: E731
  if "inputs" in request:
    value = request["inputs"]
    if named(value):
      return value, None
    if len(specs) != 1:
      raise _bad(f"the signature takes {len(specs)} inputs: give \"inputs\" as an object "
                 f"of {', '.join(sorted(specs))}")
    return {next(iter(specs)): value}, None
  instances = request["instances"]
  if not isinstance(instances, list) or not instances:
    raise _bad("\"instances\" must be a non-empty list")
  if all(named(i) for i in instances):
    keys = list(instances[0])
    if any(set(i) != set(keys) for i in instances):
      raise _bad("the instances do not all name the same inputs")
    return {k: [i[k] for i in instances] for k in keys}, len(instances)
  if len(specs) != 1:
    raise _bad(f"the signature takes {len(specs)} inputs: make each instance an object of "
               f"{', '.join(sorted(specs))}")
  return {next(iter(specs)): instances}, len(instances)


def _nested(name, value, leaf):
  """(shape, [leaf(x) for each leaf x]) of input `name`'s nested JSON lists."""
  if not isinstance(value, list):
    return (), [leaf(value)]
  parts = [_nested(name, v, leaf) for v in value]
  shapes = {shape for shape, _ in parts}
  if len(shapes) > 1:
    raise _bad(f"input {name}: the lists are ragged: not a rectangular array")
  return (len(value),) + (shapes.pop() if parts else ()), [x for _, xs in parts for x in xs]


def _binary(name, value):
  """The bytes of a string input's leaf: text (as UTF-8) or {"b64": "..."}."""
  try:
    if isinstance(value, str):
      return value.encode("utf-8")
    if _is_b64(value) and isinstance(value["b64"], str):
      return base64.b64decode(value["b64"], validate=True)
  except (binascii.Error, UnicodeError) as e:
    raise _bad(f"input {name}: invalid base64 or text: {e}") from None
  raise _bad(f"input {name} takes strings or {{\"b64\": ...}} objects, not "
             f"{json.dumps(value)[:40]}")


# The JSON number kinds each kind of tensor accepts: no silent rounding or wrapping.
_KINDS = (("is_bool", "b"), ("is_integer", "iu"), ("is_floating", "iuf"))
_KIND_NAMES = {"b": "booleans", "i": "integers", "u": "integers", "f": "fractional numbers",
               "U": "strings"}


def _tensor(name, value, spec):
  """The tensor of input `name` from its JSON `value`, checked against its TensorSpec."""
  dtype = spec.dtype
  if dtype == tf.string:
    try:
      shape, leaves = _nested(name, value, lambda leaf: _binary(name, leaf))
    except RecursionError:
      raise _bad(f"input {name}: nested too deeply") from None
    array = np.array(leaves, dtype=object).reshape(shape)
  else:
    allowed = next((kinds for test, kinds in _KINDS if getattr(dtype, test)), None)
    if allowed is None:
      raise _bad(f"input {name} is {dtype.name}, which JSON cannot carry")
    try:
      array = np.asarray(value)
    except (ValueError, RecursionError):
      raise _bad(f"input {name}: the lists are ragged: not a rectangular array") from None
    if array.size and array.dtype.kind not in allowed:
      got = _KIND_NAMES.get(array.dtype.kind, "objects or mixed values")
      raise _bad(f"input {name} takes {dtype.name} values, not {got}")
    if array.size and dtype.is_integer and (array.min() < dtype.min or array.max() > dtype.max):
      raise _bad(f"input {name} has values outside {dtype.name}'s [{dtype.min}, {dtype.max}]")
    array = array.astype(dtype.as_numpy_dtype)
  if not spec.shape.is_compatible_with(array.shape):  # never so when its rank is unknown
    dims = [-1 if d is None else d for d in spec.shape.as_list()]
    raise _bad(f"input {name} has shape {list(array.shape)}; the signature takes "
               f"{dtype.name} {dims} (-1: any size)")
  return tf.constant(array, dtype)


def _map(value, function):
  return [_map(v, function) for v in value] if isinstance(value, list) else function(value)


def _json_value(name, tensor):
  """An output tensor as JSON: binary strings in {"b64": ...}, as TF Serving sends them."""
  if tensor.dtype == tf.string:
    def text_or_b64(data):
      if not name.endswith("_bytes"):
        try:
          return data.decode("utf-8")
        except UnicodeDecodeError:
          pass
      return {"b64": base64.b64encode(data).decode("ascii")}
    return _map(tensor.numpy().tolist(), text_or_b64)
  if tensor.dtype.is_floating:  # half and bfloat16 too, which json cannot write
    return tensor.numpy().astype(np.float64).tolist()
  return tensor.numpy().tolist()


class Handler(http.server.BaseHTTPRequestHandler):
  """Answers one connection's requests (HTTP/1.1: a client may keep it open)."""

  protocol_version = "HTTP/1.1"
  timeout = 60  # seconds a connection may sit idle or trickle its body
  server: "Server"

  def do_GET(self):  # noqa: N802 (http.server's names)
    self._respond()

  def do_POST(self):  # noqa: N802
    # A slot before the body: requests waiting for one hold a socket, not a body in memory.
    with self.server.slots:
      self._respond()

  do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET  # noqa: N815 (405 or 404)

  def _route(self):
    # The body first, whatever the answer: one left unread would be taken for the next
    # request on the connection, or reset it under the answer when it closes.
    body = self._body()
    path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
    status, predict = _STATUS_OR_METADATA.fullmatch(path), _PREDICT.fullmatch(path)
    match = predict or status
    if not match:
      raise HttpError(404, f"unknown path {path}; the API: {_API}")
    method = "POST" if predict else "GET"
    if self.command != method:
      raise HttpError(405, f"{path} takes {method}, not {self.command}", {"Allow": method})
    name, version = match["name"], match["version"]
    model = self.server.models.get(name)
    if model is None or (version is not None and int(version) != model.version):
      wanted = f"Specific({name}, {version})" if version else f"Latest({name})"
      raise HttpError(404, f"Servable not found for request: {wanted}; serving "
                      f"{self.server.describe()}")
    if not predict:
      return model.metadata() if match["metadata"] else model.status()
    if self.server.stopping:
      raise HttpError(503, "the server is shutting down")
    try:
      request = json.loads(body)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError
      raise _bad(f"invalid JSON: {_first_line(e)}") from None
    return model.predict(request)

  def _body(self):
    length = self.headers.get("Content-Length")
    if length is None:
      if self.command != "POST":
        return b""
      self.close_connection = True
      raise HttpError(411, "give the body's Content-Length")
    if not length.isdigit():
      self.close_connection = True
      raise _bad(f"Content-Length {length!r} is not a number of bytes")
    length, cap = int(length), self.server.max_request_bytes
    if length > cap:
      self.close_connection = True
      # Read what a client may reasonably have sent, so that it gets this answer rather
      # than a reset connection; beyond that, hang up.
      left = min(length, 4 * cap + (1 << 20))
      while left > 0:
        chunk = self.rfile.read(min(left, 1 << 16))
        if not chunk:
          break
        left -= len(chunk)
      raise HttpError(413, f"the body has {length} bytes, over the cap of {cap} "
                      "(--max_request_mb)")
    body = self.rfile.read(length)
    if len(body) != length:
      self.close_connection = True
      raise _bad(f"the body ended after {len(body)} of {length} bytes")
    return body

  def _respond(self):
    headers = {}
    try:
      status, body = 200, json.dumps(self._route()).encode()
    except HttpError as e:
      status, body, headers = e.status, json.dumps({"error": e.message}).encode(), e.headers
    except (TimeoutError, ConnectionError):
      raise  # the client is gone or stalled: http.server closes the connection
    except Exception as e:  # pylint: disable=broad-except
      # Never down for one request: it gets a 500, the log one line (a traceback if asked).
      message = f"{type(e).__name__}: {_first_line(e)}"
      status, body = 500, json.dumps({"error": message}).encode()
      self.server.log.write(f"tfcomp serve: internal error on {self.command} {self.path}: "
                            f"{message}\n")
      if self.server.verbose or os.environ.get("TFCOMP_DEBUG"):
        traceback.print_exc(file=self.server.log)
    self.send_response(status)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(body)))
    for key, value in headers.items():
      self.send_header(key, value)
    if self.close_connection:
      self.send_header("Connection", "close")
    self.end_headers()
    if self.command != "HEAD":
      self.wfile.write(body)

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    if self.server.verbose:
      self.server.log.write(f"{self.address_string()} - {format % args}\n")


class Server(http.server.ThreadingHTTPServer):
  """The HTTP server of make_server.

  The standard library's: TF Serving itself is a C++ binary, tensorflow-serving-api holds
  only its clients' protos, and no web framework is installed offline. A thread per
  connection, and at most `max_concurrent` predictions at a time.
  """

  daemon_threads = True  # an idle kept-alive connection must not hold up the exit
  request_queue_size = 128  # a burst of clients waits in the backlog instead of being refused

  def __init__(self, address, max_concurrent, max_request_bytes, verbose, log):
    self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    self.models = {}
    self.max_concurrent = max_concurrent
    self.slots = threading.BoundedSemaphore(max_concurrent)
    self.max_request_bytes = max_request_bytes
    self.verbose = verbose
    self.log = log
    self.stopping = False
    super().__init__(address, Handler)

  @property
  def url(self):
    host, port = self.server_address[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"

  def describe(self):
    """'NAME (version V: SIGNATURES), ...' of the models served."""
    return ", ".join(f"{m.name} (version {m.version}: "
                     f"{', '.join(sorted(m.loaded.signatures)) or 'no signatures'})"
                     for m in self.models.values())

  def handle_error(self, request, client_address):
    # A client hanging up mid-answer is routine; the handlers report their own failures.
    if self.verbose:
      super().handle_error(request, client_address)

  def server_close(self, drain_seconds=30):
    """Closes the socket after the predictions under way finish (up to drain_seconds);
    any arriving meanwhile get 503."""
    if self.stopping:
      return
    self.stopping = True
    deadline = time.monotonic() + drain_seconds
    for _ in range(self.max_concurrent):
      if not self.slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
        break
    super().server_close()


def make_server(model_dir, host="127.0.0.1", port=8501, max_concurrent=4,
                max_request_bytes=64 << 20, verbose=False, log=None):
  """A Server over the SavedModels of `model_dir`, listening but not yet serving.

  Args:
    model_dir: DIR of DIR/NAME/VERSION/saved_model.pb (find_models).
    host: the address to listen on.
    port: the TCP port; 0 picks a free one (see .server_address or .url).
    max_concurrent: predictions run at once; more wait their turn.
    max_request_bytes: the largest request body taken; larger ones get 413.
    verbose: log each request, and the tracebacks of internal errors.
    log: where log lines go (default stderr).

  Returns:
    The Server: call serve_forever() (in a thread, say), then shutdown() and
    server_close().

  Raises:
    ValueError: an argument out of range, or model_dir not laid out as TF Serving's.
    OSError: the address cannot be listened on.
  """
  if not 0 <= port <= 65535:
    raise ValueError(f"port {port}: not in [0, 65535]")
  if max_concurrent < 1:
    raise ValueError(f"max_concurrent {max_concurrent}: must be at least 1")
  if max_request_bytes < 1:
    raise ValueError(f"max_request_bytes {max_request_bytes}: must be at least 1")
  found = find_models(model_dir)
  try:  # before the slow loading, to fail at once on a taken port
    server = Server((host, port), max_concurrent, max_request_bytes, verbose,
                    log or sys.stderr)
  except OSError as e:
    raise OSError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
  try:
    tfcomp.register_ops()  # the custom ops tfcomp's graphs run, before loading any
    server.models = {name: Model.load(name, version, path)
                     for name, (version, path) in found.items()}
  except BaseException:
    super(Server, server).server_close()
    raise
  return server


def run(model_dir, host, port, out=None, **options):
  """Serves until SIGINT or SIGTERM, after one line on `out` (default stdout) saying what
  and where; returns the exit status, 0. Options as make_server's."""
  out = out or sys.stdout
  server = make_server(model_dir, host, port, **options)
  # serve_forever loops in this thread; shutdown() waits for it, so it runs in another.
  stop = lambda *_: threading.Thread(target=server.shutdown, daemon=True).start()  # noqa: E731
  previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
  try:
    out.write(f"serving {server.describe()} on {server.url}\n")
    out.flush()
    server.serve_forever()
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)
    server.server_close()
  return 0
