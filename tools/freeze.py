"""Writes the coding-ready copy of a trained model, for the zoo or for export.

    python tools/freeze.py --weights runs/hp-q1/model.npz --out tfcomp/zoo/weights/NAME.npz
    python tools/freeze.py --logdir runs/hp-q1 --out NAME.npz     (its latest checkpoint)
    python tools/freeze.py --logdir runs/hific-layered --set qp=43 --out NAME.npz

--set changes a config field that holds no weights (a layered HiFiC's base QP: one trained
model, several rate points).

tools/train.py saves models as trained. Lossy models code with range-coding tables computed
once from the trained prior and stored with the weights, so a decoder never rebuilds them;
this tool computes and stores them (and the hyperprior's kernels as plain variables). The
kernels of every exact convolution (tfcomp.exact) are stored rounded to their grids, which
changes nothing they compute. Zoo names are never reused for other weights: files record
the weights hash.
"""
from absl import app, flags

import toolbox  # first: it puts the repository on the path
from tfcomp import configs, io as tfcomp_io, models, training  # pylint: disable=wrong-import-order
from tfcomp.models import layers

FLAGS = flags.FlagValues()
flags.DEFINE_string("weights", None, "a model .npz written by tools/train.py",
                    flag_values=FLAGS)
flags.DEFINE_string("logdir", None, "a tools/train.py run: freeze its latest checkpoint "
                    "(instead of --weights)", flag_values=FLAGS)
flags.DEFINE_string("out", None, "the coding-ready .npz to write", flag_values=FLAGS)
flags.DEFINE_multi_string("set", [], "override a config field that holds no weights: "
                          "key=value (value is JSON)", flag_values=FLAGS)


def with_config(family, model, overrides):
  """A copy of `model` built from its config with `overrides` ({field: value}) and holding
  its weights; ValueError for an unknown field or one that changes the weights."""
  config = model.get_config()
  unknown = sorted(set(overrides) - set(config))
  if unknown:
    raise ValueError(f"unknown config fields {unknown}; fields: {sorted(config)}")
  copy = models.build(family, {**config, **overrides})
  models.build_variables(copy)
  if [tuple(v.shape) for v in copy.weights] != [tuple(v.shape) for v in model.weights]:
    raise ValueError(f"{sorted(overrides)} change the model's weights; only fields that "
                     "hold none can be set here")
  for source, target in zip(model.weights, copy.weights):
    target.assign(source)
  return copy


def freeze(family, model):
  """The coding-ready .npz bytes of `model`."""
  if hasattr(model, "coding_copy"):
    model = model.coding_copy()
  elif hasattr(model, "make_compressible") and not model.compression:
    model.make_compressible()
  layers.snap_exact_kernels(model)
  return models.to_bytes(model, family)


def main(argv):
  """Runs the tool on a full command line (program name first)."""
  argv = toolbox.parse(FLAGS, __doc__, argv)
  if argv is None:
    return
  if len(argv) != 1 or bool(FLAGS.weights) == bool(FLAGS.logdir) or not FLAGS.out:
    raise app.UsageError("give --out OUT.npz and one of --weights IN.npz, --logdir RUN")
  if FLAGS.weights:
    source = FLAGS.weights
    family, model = models.load(source)
  else:
    family, model, step = training.load_run(FLAGS.logdir)
    source = f"{FLAGS.logdir} at step {step}"
  if FLAGS.set:
    model = with_config(family, model, configs.parse_overrides(FLAGS.set))
  frozen = freeze(family, model)
  tfcomp_io.write_atomic(FLAGS.out, frozen)
  print(f"{source} -> {FLAGS.out} ({len(frozen) / 1e6:.2f} MB)")


if __name__ == "__main__":
  toolbox.run(main)
