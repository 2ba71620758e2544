"""What the tools share: their command-line plumbing and opening a codec by name or weights.

Each tool keeps its own absl flag registry (so tests can import several tools into one
process) and exposes main(argv) taking the full command line, program name first.
"""
import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# pylint: disable=wrong-import-position
from tfcomp import codecs, zoo  # before TensorFlow: tfcomp turns on oneDNN


def parse(flag_values, doc, argv):
  """The positional arguments of `argv` (program name first) after parsing its flags into
  `flag_values`; None if it asked for help, which this prints (`doc`, then the flags)."""
  if "--help" in argv or "-h" in argv:
    print(doc + "\n" + flag_values.get_help())
    return None
  return flag_values(argv)


def run(main):
  """Runs main(sys.argv) as a command: a usage error exits with one line on stderr."""
  try:
    main(sys.argv)
  except (app.UsageError, flags.Error) as e:
    sys.exit(f"{os.path.basename(sys.argv[0])}: error: {e}")


def load_codec(model, weights):
  """The codec of zoo model `model`, or of the model .npz `weights` (exactly one given)."""
  if bool(model) == bool(weights):
    raise app.UsageError("give exactly one of --model and --weights")
  if weights:
    return codecs.from_weights(os.path.splitext(os.path.basename(weights))[0], weights)
  try:
    return zoo.load(model)
  except KeyError as e:
    raise app.UsageError(str(e.args[0])) from None
