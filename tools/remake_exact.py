"""Re-makes a hyperprior of tfcomp's pre-exact generations for the exact path.

    git show 993d1c0:tfcomp/zoo/weights/hyperprior-ms-v3-q2.npz > /tmp/v3-q2.npz
    python tools/remake_exact.py --weights /tmp/v3-q2.npz --out NAME.npz

Up to commit 993d1c0, the networks that decide probabilities ran in plain float32, so
their files decoded only on machines that summed like the encoder's. Today's models run
those networks on exact grids (tfcomp.exact), from the same kind of float weights. SReC
and L3C kept their layers, so their old weights load as they are (tools/freeze.py stores
them coding-ready); imgcomp's context model was exact already. The hyperprior's h_s was
a stack of tensorflow-compression SignalConv2D layers with RDFT-parameterized kernels;
today it is tfcomp's own exact convolutions with plain kernels. This tool gives them the
old layers' evaluated kernels (checked to compute the same function in float) and writes
the coding-ready model, as tools/freeze.py does.
"""
import io
import json

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc
from absl import app, flags

import toolbox  # first: it puts the repository on the path
import freeze  # pylint: disable=wrong-import-order
from tfcomp import io as tfcomp_io, models  # pylint: disable=wrong-import-order

FLAGS = flags.FlagValues()
flags.DEFINE_string("weights", None, "a model .npz of a pre-exact generation", flag_values=FLAGS)
flags.DEFINE_string("out", None, "the re-made model .npz to write", flag_values=FLAGS)


def _stored(raw):
  """(family, config, [(weight name, array)] in weight order) of a models.save .npz."""
  with np.load(io.BytesIO(raw)) as f:
    keys = sorted(k for k in f.files if k.startswith("w"))
    return (str(f["family"]), json.loads(str(f["config"])),
            [(k.split(":", 1)[1], f[k]) for k in keys])


def _legacy_h_s(config):
  """The pre-exact h_s: SignalConv2D layers with RDFT kernels, as that code built them."""
  h, m = config["hyper_filters"], config["latent_channels"]
  mean_scale = config["variant"] == "mean_scale"
  conv = lambda filters, kernel, up, **kw: tfc.SignalConv2D(  # noqa: E731
      filters, (kernel, kernel), corr=up == 1, strides_up=up, padding="same_zeros",
      use_bias=True, **kw)
  net = tf.keras.Sequential([
      conv(h, 5, 2, activation=tf.nn.relu, name="layer_0"),
      conv(h * 3 // 2 if mean_scale else h, 5, 2, activation=tf.nn.relu, name="layer_1"),
      conv(2 * m if mean_scale else m, 3, 1, name="layer_2")], name="h_s")
  net.build((None, None, None, h))
  return net


def remake_hyperprior(config, arrays):
  """A Hyperprior from a pre-exact one's config and [(weight name, array)]."""
  model = models.build("hyperprior", {**config, "kernel_parameter": "rdft"})
  legacy = _legacy_h_s(config)
  ours = {id(v) for v in model.h_s.weights}
  slots = [v for v in model.weights if id(v) not in ours]
  start = next(i for i, v in enumerate(model.weights) if id(v) in ours)
  old_h_s = arrays[start:start + len(legacy.weights)]
  rest = arrays[:start] + arrays[start + len(legacy.weights):]
  for variables, stored in ((slots, rest), (legacy.weights, old_h_s)):
    names = [v.name for v in variables]
    if names != [name for name, _ in stored]:
      raise ValueError(f"the stored weights do not match the pre-exact hyperprior: "
                       f"{[name for name, _ in stored]} vs {names}")
    for v, (_, value) in zip(variables, stored):
      v.assign(value)
  for old, new in zip(legacy.layers, model.h_s.layers, strict=True):
    new.kernel.assign(old.kernel)
    new.bias.assign(old.bias)
  # Our convolutions must compute what the old layers did (in float, before the grids).
  z = tf.random.stateless_normal((1, 5, 7, config["hyper_filters"]), (1, 2))
  want, got = legacy(z), z
  for layer in model.h_s.layers:
    got = layer.activation(tf.nn.bias_add(layer.convolution_op(got, layer.kernel), layer.bias))
  error = float(tf.reduce_max(tf.abs(want - got)))
  if error > 1e-3:
    raise AssertionError(f"re-made h_s differs from the old one by {error}")
  return model


def main(argv):
  """Runs the tool on a full command line (program name first)."""
  argv = toolbox.parse(FLAGS, __doc__, argv)
  if argv is None:
    return
  if len(argv) != 1 or not FLAGS.weights or not FLAGS.out:
    raise app.UsageError("give --weights OLD.npz and --out NEW.npz")
  with open(FLAGS.weights, "rb") as f:
    family, config, arrays = _stored(f.read())
  if family != "hyperprior":
    raise app.UsageError(f"{FLAGS.weights} holds a {family} model; only hyperprior models "
                         "need re-making (tools/freeze.py stores the others coding-ready)")
  out = freeze.freeze(family, remake_hyperprior(config, arrays))
  tfcomp_io.write_atomic(FLAGS.out, out)
  print(f"{FLAGS.weights} -> {FLAGS.out} ({family}, {len(out) / 1e6:.2f} MB)")


if __name__ == "__main__":
  toolbox.run(main)
