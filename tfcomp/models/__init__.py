"""tfcomp's Keras models, one class per family, all with the same contract.

    model(x, training) -> {"x_hat": reconstruction, "bits": [B], ...}
    model.compress(...) -> streams;  model.decompress(streams, ...) -> image
    model.get_config() -> constructor arguments (plain data)

`FAMILIES` maps a family name to its class; `build(family, config)` constructs one, and
`save` / `load` store a model as a single .npz of its config and weights (the zoo's format).
"""
import io
import json

import numpy as np
import tensorflow as tf

from tfcomp.models.hific import HiFiC
from tfcomp.models.hyperprior import Hyperprior
from tfcomp.models.imgcomp import Imgcomp
from tfcomp.models.l3c import L3C
from tfcomp.models.rc import RC
from tfcomp.models.srec import SReC

FAMILIES = {"l3c": L3C, "hyperprior": Hyperprior, "srec": SReC, "imgcomp": Imgcomp,
            "hific": HiFiC, "rc": RC}


def build(family, config):
  """Constructs `family`'s model from a config dict (its constructor arguments)."""
  try:
    cls = FAMILIES[family]
  except KeyError:
    raise ValueError(f"unknown model family {family!r}; known: {sorted(FAMILIES)}") from None
  return cls(**config)


def build_variables(model):
  """Creates a model's variables by running it once on a tiny input, unless its
  constructor built them (a loaded lossy model's coding tables are still empty here)."""
  if model.built:
    return
  side = getattr(model, "block_size", 8)
  model(tf.zeros((1, side, side, 3), tf.uint8))


def _weight_keys(model):
  # Keras prefixes layer variables with the model's uniquified name ("l3c_1/..."), which
  # says nothing about the weight.
  prefix = model.name + "/"
  return [f"w{i:04d}:{v.name[len(prefix):] if v.name.startswith(prefix) else v.name}"
          for i, v in enumerate(model.weights)]


def to_bytes(model, family):
  """A model as .npz bytes: family, config (JSON) and every weight, in `model.weights` order.

  Weights are keyed by position and name ("w0007:layer_0/bias:0"): variable names alone
  are not unique (tensorflow-compression's layers and modules do not nest them), while
  the order is fixed by the model's constructor.
  """
  arrays = {k: v.numpy() for k, v in zip(_weight_keys(model), model.weights)}
  buffer = io.BytesIO()
  np.savez_compressed(buffer, family=np.array(family), config=np.array(json.dumps(
      model.get_config(), sort_keys=True)), **arrays)
  return buffer.getvalue()


def from_bytes(raw):
  """Inverse of `to_bytes`; returns (family, model)."""
  with np.load(io.BytesIO(raw)) as f:
    family = str(f["family"])
    model = build(family, json.loads(str(f["config"])))
    build_variables(model)
    stored = sorted((k, f[k]) for k in f.files if k.startswith("w"))
  expected = _weight_keys(model)
  if [k for k, _ in stored] != expected:
    mismatch = next((f"{k} vs {e}" for (k, _), e in zip(stored, expected) if k != e),
                    f"{len(stored)} stored, {len(expected)} needed")
    raise ValueError(f"weights do not match the {family} model: {mismatch}")
  for v, (key, value) in zip(model.weights, stored):
    if v.shape.is_fully_defined() and tuple(v.shape) != value.shape:
      raise ValueError(f"weight {key} has shape {value.shape}, the model needs {v.shape}")
    v.assign(value)
  return family, model


def family_of(path):
  """The family name stored in a model .npz (reads that entry only)."""
  with np.load(path) as f:
    return str(f["family"])


def save(model, family, path):
  with open(path, "wb") as f:
    f.write(to_bytes(model, family))


def load(path):
  with open(path, "rb") as f:
    return from_bytes(f.read())
