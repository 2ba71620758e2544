"""Writes the coding-ready copy of a trained model, for the zoo or for export.

    python tools/freeze.py --weights runs/hp-q1/model.npz --out tfcomp/zoo/weights/NAME.npz
    python tools/freeze.py --logdir runs/hp-q1 --out NAME.npz     (its latest checkpoint)

tools/train.py saves models as trained. Lossy models code with range-coding tables computed
once from the trained prior and stored with the weights, so a decoder never rebuilds them;
this tool computes and stores them. Lossless models need no tables and are copied as is.
Zoo names are never reused for other weights: files record the weights hash.
"""
import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# pylint: disable=wrong-import-position
from tfcomp import io as tfcomp_io, models, training

FLAGS = flags.FlagValues()
flags.DEFINE_string("weights", None, "a model .npz written by tools/train.py",
                    flag_values=FLAGS)
flags.DEFINE_string("logdir", None, "a tools/train.py run: freeze its latest checkpoint "
                    "(instead of --weights)", flag_values=FLAGS)
flags.DEFINE_string("out", None, "the coding-ready .npz to write", flag_values=FLAGS)


def freeze(family, model):
  """The coding-ready .npz bytes of `model`."""
  if hasattr(model, "make_compressible") and not model.compression:
    model.make_compressible()
  return models.to_bytes(model, family)


def main(argv):
  """Runs the tool on a full command line (program name first)."""
  if "--help" in argv or "-h" in argv:
    print(__doc__ + "\n" + FLAGS.get_help())
    return
  argv = FLAGS(argv)
  if len(argv) != 1 or bool(FLAGS.weights) == bool(FLAGS.logdir) or not FLAGS.out:
    raise app.UsageError("give --out OUT.npz and one of --weights IN.npz, --logdir RUN")
  if FLAGS.weights:
    source = FLAGS.weights
    family, model = models.load(source)
  else:
    family, model, step = training.load_run(FLAGS.logdir)
    source = f"{FLAGS.logdir} at step {step}"
  frozen = freeze(family, model)
  tfcomp_io.write_atomic(FLAGS.out, frozen)
  print(f"{source} -> {FLAGS.out} ({len(frozen) / 1e6:.2f} MB)")


if __name__ == "__main__":
  try:
    main(sys.argv)
  except (app.UsageError, flags.Error) as e:
    sys.exit(f"{os.path.basename(sys.argv[0])}: error: {e}")
