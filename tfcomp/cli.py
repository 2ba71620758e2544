"""The `tfcomp` command.

    tfcomp compress [--model NAME] [--refine_steps N] INPUT OUTPUT
    tfcomp decompress INPUT OUTPUT.png
    tfcomp info FILE
    tfcomp models
    tfcomp bench --mode lossless|lossy --images SPEC --out DIR [...]   (see tfcomp.bench)

Exit status 0 on success; otherwise non-zero with one line on stderr. Outputs are written
atomically, so an error never leaves a partial file behind.
"""
import argparse
import logging
import os
import sys

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a closed pipe


class UsageError(Exception):
  pass


class _Parser(argparse.ArgumentParser):

  def error(self, message):
    raise UsageError(f"{message} (see `tfcomp --help`)")


def _parser():
  p = _Parser(prog="tfcomp", description="Learned image compression with real bitstreams.")
  sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
  c = sub.add_parser("compress", help="compress an image into a .tfc file")
  c.add_argument("--model", default=None, help="zoo model (default: the default lossless "
                 "model, or fixedpred-v1 for images it cannot code; see `tfcomp models`)")
  c.add_argument("--refine_steps", type=int, default=0, metavar="N",
                 help="hyperprior models: fit the latents to the image with N optimization "
                 "steps before coding (slower encoding, fewer bits for the same quality; "
                 "try 30 to 100); files decode as usual")
  c.add_argument("input", help="image: PNG, or any format Pillow reads (8 or 16 bits; gray, "
                 "RGB, with or without alpha)")
  c.add_argument("output", help="the .tfc file to write")
  d = sub.add_parser("decompress", help="decompress a .tfc file into a PNG")
  d.add_argument("input", help="a .tfc file")
  d.add_argument("output", help="the PNG to write (a name ending in .png, or no extension)")
  i = sub.add_parser("info", help="describe a .tfc file")
  i.add_argument("file")
  sub.add_parser("models", help="list the zoo's models, one per line, name first")
  sub.add_parser("bench", help="compare codecs on images (tfcomp bench --help)",
                 add_help=False)
  return p


def _describe(g):
  from tfcomp import codecs  # pylint: disable=import-outside-toplevel
  return f"{g.width}x{g.height} {codecs.CHANNEL_KINDS[g.channels]} {g.bit_depth}-bit"


def _read_bytes(path):
  try:
    with open(path, "rb") as f:
      return f.read()
  except OSError as e:
    raise OSError(f"{path}: cannot open: {e.strerror}") from None


def cmd_compress(args, out):
  from tfcomp import codecs, io, zoo  # pylint: disable=import-outside-toplevel
  if args.model:
    zoo.get(args.model)  # unknown names fail before any image work
  io.check_writable(args.output)
  image = io.read_image(args.input)
  name = args.model or zoo.default_for(image)
  data = codecs.compress(image, zoo.load(name), refine_steps=args.refine_steps)
  io.write_atomic(args.output, data)
  g = codecs.geometry_of(image)
  out.write(f"{args.input}: {_describe(g)} -> {args.output}: {len(data)} bytes, "
            f"{8 * len(data) / image.size:.4f} bits/subpixel ({name})\n")


def cmd_decompress(args, out):
  from tfcomp import codecs, io, zoo  # pylint: disable=import-outside-toplevel
  extension = os.path.splitext(args.output)[1]
  if extension and extension.lower() != ".png":
    # Writing PNG bytes under another format's name would mislead whatever opens it.
    raise UsageError(f"{args.output}: decompress writes PNG, not {extension}; name the "
                     "output .png and convert it if needed")
  io.check_writable(args.output)
  image, parsed = codecs.decompress(_read_bytes(args.input), zoo.load)
  io.write_atomic(args.output, io.encode_png(image))
  out.write(f"{args.input} -> {args.output}: {_describe(parsed.geometry)} PNG "
            f"({parsed.model})\n")


def cmd_info(args, out):
  from tfcomp import container, zoo  # pylint: disable=import-outside-toplevel
  data = _read_bytes(args.file)
  parsed = container.read(data)
  g = parsed.geometry
  subpixels = g.height * g.width * g.channels
  codec = None
  try:
    codec = zoo.load(parsed.model)
    installed = codec.weights_hash == parsed.weights_hash
    status = "installed" if installed else "NOT installed (other weights)"
  except KeyError as e:
    status = "NOT installed (" + (f"model {e.reason}" if hasattr(e, "reason") else
                                  "unknown model") + ")"
  details = codec.describe(parsed.sections, g) if codec and installed else []
  out.write(f"file: {args.file}\n"
            f"format version: {container.FORMAT_VERSION}\n"
            f"model: {parsed.model} (weights {parsed.weights_hash.hex()}, {status})\n"
            f"image: {_describe(g)}\n"
            f"size: {len(data)} bytes, {8 * len(data) / subpixels:.4f} bits/subpixel\n")
  for name, section in parsed.sections.items():
    out.write(f"section {name}: {len(section)} bytes\n")
  for line in details:
    out.write(line + "\n")


def cmd_models(args, out):
  del args
  from tfcomp import zoo  # pylint: disable=import-outside-toplevel
  for e in zoo.ENTRIES:
    default = " [default]" if e.name == zoo.DEFAULT else ""
    kind = "lossless" if e.lossless else "lossy"
    out.write(f"{e.name}\t{e.family}\t{kind}{default}\t{e.description}\n")


def cmd_bench(args, out):
  del out  # the harness prints its own tables
  from tfcomp import bench  # pylint: disable=import-outside-toplevel
  try:
    bench.main(args.args)
  except bench.UsageError as e:
    raise UsageError(str(e)) from None


COMMANDS = {"compress": cmd_compress, "decompress": cmd_decompress, "info": cmd_info,
            "models": cmd_models, "bench": cmd_bench}


def main(argv=None, out=None, err=None):
  """Runs the command line `argv` (without the program name); returns the exit status."""
  out = out or sys.stdout
  err = err or sys.stderr
  argv = list(sys.argv[1:] if argv is None else argv)
  try:
    if argv[:1] == ["bench"]:  # the harness parses its own options
      args = argparse.Namespace(command="bench", args=argv[1:])
    else:
      args = _parser().parse_args(argv)
    if args.command is None:
      raise UsageError("missing command: compress, decompress, info or models "
                       "(see `tfcomp --help`)")
  except UsageError as e:
    err.write(f"tfcomp: error: {e}\n")
    return EXIT_USAGE
  except SystemExit as e:  # --help
    return e.code or 0
  # Libraries' own warnings (imagecodecs, absl) would add lines to stderr.
  for name in ("imagecodecs", "absl", "tensorflow"):
    logging.getLogger(name).setLevel(logging.CRITICAL)
  from tfcomp import codecs, container, io  # pylint: disable=import-outside-toplevel
  from tfcomp.ops import OpsNotBuiltError  # pylint: disable=import-outside-toplevel
  expected = (io.ImageError, codecs.UnsupportedImageError, container.FormatError,
              OpsNotBuiltError, OSError, KeyError, ValueError)
  try:
    COMMANDS[args.command](args, out)
  except UsageError as e:
    err.write(f"tfcomp: error: {e}\n")
    return EXIT_USAGE
  except BrokenPipeError:
    # The reader went away (`tfcomp models | head`): stop quietly, as Unix tools do, and
    # keep the interpreter's final flush from failing again.
    if out is sys.stdout:
      os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_BROKEN_PIPE
  except expected as e:
    message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    err.write(f"tfcomp: error: {message}\n")
    return EXIT_ERROR
  except MemoryError:
    err.write("tfcomp: error: out of memory\n")
    return EXIT_ERROR
  except KeyboardInterrupt:
    err.write("tfcomp: interrupted\n")
    return 130
  except Exception as e:  # pylint: disable=broad-except
    # One line whatever happened; tracebacks are for developers (TFCOMP_DEBUG=1).
    if os.environ.get("TFCOMP_DEBUG"):
      raise
    err.write(f"tfcomp: internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}\n")
    return EXIT_INTERNAL
  return 0


def run():
  sys.exit(main(sys.argv[1:]))
