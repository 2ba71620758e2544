"""The `tfcomp` command.

    tfcomp compress [--model NAME] [--refine_steps N] [--effort N] INPUT OUTPUT
    tfcomp decompress INPUT OUTPUT.png
    tfcomp info FILE
    tfcomp models
    tfcomp bench --mode lossless|lossy --images SPEC --out DIR [...]   (see tfcomp.bench)
    tfcomp serve --model_dir DIR [--port 8501] [--host 127.0.0.1]   (see tfcomp.serve)

Exit status 0 on success; otherwise non-zero with one line on stderr. Outputs are written
atomically, so an error never leaves a partial file behind.
"""
import argparse
import glob
import logging
import os
import sys
import time
import warnings

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
  c = sub.add_parser("compress", help="compress images into .tfc files",
                     description="Compress INPUT into the file OUTPUT; or, given several "
                     "inputs, a folder or a quoted glob, each image into OUTPUT/NAME.tfc.")
  c.add_argument("--model", default=None, help="zoo model (default: the default lossless "
                 "model, or fixedpred-v1 for images it cannot code; see `tfcomp models`)")
  c.add_argument("--lossy", action="store_true", help="code lossily with the default lossy "
                 "model's rate point nearest to --bpp or --quality (default: --quality 75)")
  c.add_argument("--bpp", type=float, default=None, metavar="X",
                 help="with --lossy: the rate point whose bits per pixel on Kodak are nearest X")
  c.add_argument("--quality", type=float, default=None, metavar="Q",
                 help="with --lossy: 1 (fewest bits) to 100 (best quality), spread over the "
                 "rate points as JPEG's quality is")
  c.add_argument("--refine_steps", type=int, default=0, metavar="N",
                 help="hyperprior models: fit the latents to the image with N optimization "
                 "steps before coding (slower encoding, fewer bits for the same quality; "
                 "try 30 to 100); files decode as usual")
  c.add_argument("--effort", type=int, default=None, metavar="N",
                 help="learned lossless models: 1 codes through the model alone; 2 (the "
                 "default) also adapts the coder to each image as it codes it (a few percent "
                 "fewer bits, about a tenth slower); files of any effort decode alike")
  c.add_argument("paths", nargs="+", metavar="INPUT ... OUTPUT",
                 help="images (PNG, or any format Pillow reads: 8 or 16 bits; gray, RGB, with "
                 "or without alpha), folders of them or quoted globs; then the .tfc file, or "
                 "the folder for many")
  d = sub.add_parser("decompress", help="decompress .tfc files into PNGs",
                     description="Decompress INPUT into the PNG OUTPUT; or, given several "
                     "inputs, a folder or a quoted glob, each file into OUTPUT/NAME.png.")
  d.add_argument("paths", nargs="+", metavar="INPUT ... OUTPUT",
                 help=".tfc files, folders of them or quoted globs; then the PNG (a name ending "
                 "in .png, or no extension), or the folder for many")
  i = sub.add_parser("info", help="describe a .tfc file")
  i.add_argument("file")
  m = sub.add_parser("models", help="list the zoo's models with their measured figures")
  m.add_argument("--all", action="store_true", help="also the retired models")
  sub.add_parser("bench", help="compare codecs on images (tfcomp bench --help)",
                 add_help=False)
  s = sub.add_parser("serve", help="serve SavedModels over TensorFlow Serving's REST API",
                     description="Serve the SavedModels of DIR, laid out as "
                     "DIR/NAME/VERSION/saved_model.pb (the highest VERSION of each NAME), "
                     "over TensorFlow Serving's REST API: GET /v1/models/NAME[/metadata], "
                     "POST /v1/models/NAME:predict. Ctrl-C or SIGTERM stops it.")
  s.add_argument("--model_dir", required=True, metavar="DIR",
                 help="the models: DIR/NAME/VERSION/saved_model.pb (tools/export.py writes one)")
  s.add_argument("--port", type=int, default=8501,
                 help="the TCP port (default: 8501, TF Serving's REST port; 0: a free one)")
  s.add_argument("--host", default="127.0.0.1",
                 help="the address to listen on (default: 127.0.0.1, this machine only; "
                 "0.0.0.0 for all)")
  s.add_argument("--max_concurrent", type=int, default=4, metavar="N",
                 help="predictions run at once; more wait their turn (default: 4)")
  s.add_argument("--max_request_mb", type=float, default=64, metavar="MB",
                 help="the largest request body taken, in MiB; larger ones get 413 (default: 64)")
  s.add_argument("--verbose", action="store_true", help="log each request on stderr")
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


# What a user's input or installation can cause: one line. Unreadable images, damaged files
# and unsupported kinds are ValueErrors; an unbuilt op library is an ImportError.
_EXPECTED = (ValueError, OSError, KeyError, ImportError)


def _message(error):
  return error.args[0] if isinstance(error, KeyError) and error.args else str(error)


_GLOB_CHARACTERS = set("*?[")


def _jobs(paths, extensions, output_extension):
  """(single, [(input, output)], [(input, problem)]) for a command's INPUT ... OUTPUT.

  Several inputs, a folder (its files with `extensions`) or a glob make a batch whose
  OUTPUT is a folder (made if missing), each input going to OUTPUT/NAME + output_extension;
  one plain file is a single job whose OUTPUT is a file."""
  if len(paths) < 2:
    raise UsageError("the following arguments are required: OUTPUT")
  *inputs, output = paths
  single = len(inputs) == 1 and not os.path.isdir(inputs[0]) and not (
      _GLOB_CHARACTERS & set(inputs[0]) and not os.path.exists(inputs[0]))
  if single:
    return True, [(inputs[0], output)], []
  if os.path.exists(output) and not os.path.isdir(output):
    raise UsageError(f"{output}: with several inputs, a folder or a glob, the last argument "
                     "is the output folder, and this is a file")
  files, problems = [], []
  for spec in inputs:
    if os.path.isdir(spec):
      found = sorted(os.path.join(spec, n) for n in os.listdir(spec)
                     if os.path.splitext(n)[1].lower() in extensions and
                     os.path.isfile(os.path.join(spec, n)))
    elif _GLOB_CHARACTERS & set(spec) and not os.path.exists(spec):
      found = sorted(f for f in glob.glob(spec) if os.path.isfile(f))
    else:
      found = [spec]
    if not found:
      problems.append((spec, "no files to code there"))
    files += found
  jobs, taken = [], {}
  inputs_seen = {os.path.realpath(f) for f in files}
  for f in files:
    target = os.path.join(output, os.path.splitext(os.path.basename(f))[0] + output_extension)
    key = os.path.realpath(target)
    if key in inputs_seen:
      problems.append((f, f"its output {target} is one of the inputs"))
    elif key in taken:
      problems.append((f, f"its output {target} is already {taken[key]}'s"))
    else:
      taken[key] = f
      jobs.append((f, target))
  return False, jobs, problems


def _execute(single, jobs, problems, code_one, output, out, err):
  """Runs a command's jobs (_jobs): a single one as it is, or a batch into the folder
  `output` (_run_jobs). Returns the exit status."""
  if single:
    (source, target), = jobs
    if os.path.exists(source) and os.path.exists(target) and os.path.samefile(source, target):
      raise UsageError(f"{target}: the output would overwrite the input")
    out.write(code_one(source, target)[2] + "\n")
    return 0
  os.makedirs(output, exist_ok=True)
  return _run_jobs(jobs, problems, code_one, out, err)


def _run_jobs(jobs, problems, code_one, out, err):
  """Codes each (input, output) with code_one -> (bytes read, bytes written, line): a
  failure is one line on `err` and the others go on; a summary closes. Returns the exit
  status."""
  from tqdm import tqdm  # pylint: disable=import-outside-toplevel
  start = time.perf_counter()
  for spec, problem in problems:
    err.write(f"tfcomp: error: {spec}: {problem}\n")
  failed, bytes_in, bytes_out = len(problems), 0, 0
  bar = tqdm(jobs, unit="file", file=sys.stderr,
             disable=not (err is sys.stderr and sys.stderr.isatty()))
  for source, target in bar:
    try:
      size_in, size_out, line = code_one(source, target)
    except _EXPECTED as e:
      failed += 1
      message = _message(e)  # which names the file already where it comes from reading it
      if not message.startswith(source):
        message = f"{source}: {message}"
      bar.write(f"tfcomp: error: {message}", file=err)
      continue
    bytes_in += size_in
    bytes_out += size_out
    bar.write(line, file=out)
  done = len(jobs) + len(problems) - failed
  ratio = f" ({bytes_in / bytes_out:.2f}:1)" if bytes_out else ""
  out.write(f"{done} of {len(jobs) + len(problems)} files coded: {bytes_in:,} bytes read, "
            f"{bytes_out:,} written{ratio}, {time.perf_counter() - start:.1f} s" +
            (f"; {failed} failed\n" if failed else "\n"))
  return EXIT_ERROR if failed else 0


def _model_for_request(args):
  """The zoo model --model or --lossy asks for (None: each image's default), and how it was
  picked, for the output line."""
  from tfcomp import zoo  # pylint: disable=import-outside-toplevel
  lossy = args.lossy or args.bpp is not None or args.quality is not None
  if args.bpp is not None and args.quality is not None:
    raise UsageError("give --bpp or --quality, not both")
  if lossy and args.model:
    raise UsageError("--lossy, --bpp and --quality pick a model; drop --model, or them")
  if args.effort is not None and (lossy or args.effort < 1):
    raise UsageError(f"--effort {args.effort}: efforts are 1, 2, ... for the learned lossless "
                     "models" + (", not with --lossy, --bpp or --quality" if lossy else ""))
  if args.model:
    zoo.get(args.model)  # unknown names fail before any image work
    return args.model, ""
  if not lossy:
    return None, ""
  try:
    name, rate = zoo.lossy_rate_point(bpp=args.bpp, quality=args.quality)
  except ValueError as e:
    raise UsageError(str(e)) from None
  asked = f"--bpp {args.bpp:g}" if args.bpp is not None else (
      f"--quality {args.quality:g}" if args.quality is not None else "--lossy")
  return name, f"; {asked}: {rate:.3f} bpp on Kodak"


def cmd_compress(args, out, err):
  from tfcomp import codecs, io, zoo  # pylint: disable=import-outside-toplevel
  requested, why = _model_for_request(args)
  single, jobs, problems = _jobs(args.paths, io.IMAGE_EXTENSIONS, ".tfc")

  def code_one(source, target):
    io.check_writable(target)
    image = io.read_image(source)
    name = requested or zoo.default_for(image)
    codec = zoo.load(name)
    # An image whose default model has no efforts (fixedpred-v1: alpha, 16 bits) is coded
    # as usual; a model the user named must have them.
    effort = args.effort if requested or codec.efforts else None
    data = codecs.compress(image, codec, refine_steps=args.refine_steps, effort=effort)
    io.write_atomic(target, data)
    return os.path.getsize(source), len(data), (
        f"{source}: {_describe(codecs.geometry_of(image))} -> {target}: {len(data)} bytes, "
        f"{8 * len(data) / image.size:.4f} bits/subpixel ({name}{why})")

  return _execute(single, jobs, problems, code_one, args.paths[-1], out, err)


def cmd_decompress(args, out, err):
  from tfcomp import codecs, io, zoo  # pylint: disable=import-outside-toplevel
  single, jobs, problems = _jobs(args.paths, (".tfc",), ".png")
  if single:
    extension = os.path.splitext(jobs[0][1])[1]
    if extension and extension.lower() != ".png":
      # Writing PNG bytes under another format's name would mislead whatever opens it.
      raise UsageError(f"{jobs[0][1]}: decompress writes PNG, not {extension}; name the "
                       "output .png and convert it if needed")

  def code_one(source, target):
    io.check_writable(target)
    data = _read_bytes(source)
    image, parsed = codecs.decompress(data, zoo.load)
    png = io.encode_png(image)
    io.write_atomic(target, png)
    return len(data), len(png), (f"{source} -> {target}: {_describe(parsed.geometry)} PNG "
                                 f"({parsed.model})")

  return _execute(single, jobs, problems, code_one, args.paths[-1], out, err)


def cmd_info(args, out, err):
  del err
  # Neither a model nor TensorFlow: the file and the zoo's weights files tell all.
  from tfcomp import codecs, container, zoo  # pylint: disable=import-outside-toplevel
  data = _read_bytes(args.file)
  parsed = container.read(data)
  g = parsed.geometry
  subpixels = g.height * g.width * g.channels
  installed, family = False, None
  try:
    installed = zoo.weights_hash(parsed.model) == parsed.weights_hash
    family = zoo.get(parsed.model).family
    status = "installed" if installed else "NOT installed (other weights)"
  except KeyError as e:
    status = "NOT installed (" + (f"model {e.reason}" if hasattr(e, "reason") else
                                  "unknown model") + ")"
  details = codecs.describe(parsed.sections, g, family) if installed else []
  out.write(f"file: {args.file}\n"
            f"format version: {container.FORMAT_VERSION}\n"
            f"model: {parsed.model} (weights {parsed.weights_hash.hex()}, {status})\n"
            f"image: {_describe(g)}\n"
            f"size: {len(data)} bytes, {8 * len(data) / subpixels:.4f} bits/subpixel\n")
  for name, section in parsed.sections.items():
    out.write(f"section {name}: {len(section)} bytes\n")
  for line in details:
    out.write(line + "\n")


def cmd_models(args, out, err):
  del err
  from tfcomp import zoo  # pylint: disable=import-outside-toplevel
  rows = [("MODEL", "FAMILY", "KIND", "ON KODAK", "ENC / DEC S", "FOR")]
  for e in zoo.ENTRIES:
    f = zoo.figures(e.name)
    if not f:
      measured, seconds = "not measured", ""
    else:
      measured = (f"{f['bpsp']:.3f} bpsp" if e.lossless else
                  f"{f['bpp']:.3f} bpp, {f['psnr']:.2f} dB, MS-SSIM {f['ms_ssim']:.4f}" +
                  (f", LPIPS {f['lpips']:.3f}" if "lpips" in f else ""))
      seconds = f"{f['encode_s']:.2f} / {f['decode_s']:.2f}"
    kind = ("lossless" if e.lossless else "lossy") + (" *" if e.name == zoo.DEFAULT else "")
    rows.append((e.name, e.family, kind, measured, seconds, e.use))
  if args.all:
    for name, (replacement, _) in zoo.RETIRED.items():
      rows.append((name, name.split("-")[0], "retired", "", "", f"replaced by {replacement}"))
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
  for r in rows:
    out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] + "\n")
  out.write("* the default. Means over the 24 Kodak images, from the zoo's manifest, which "
            "tools/bench.py writes (BENCHMARKS.md has the runs)." +
            ("" if args.all else " --all adds the retired models.") + "\n")


def cmd_bench(args, out, err):
  del out, err  # the harness prints its own tables
  from tfcomp import bench  # pylint: disable=import-outside-toplevel
  try:
    bench.main(args.args)
  except bench.UsageError as e:
    raise UsageError(str(e)) from None


def cmd_serve(args, out, err):
  # Checked before importing TensorFlow, which takes seconds.
  if not 0 <= args.port <= 65535:
    raise UsageError(f"--port {args.port}: not in [0, 65535]")
  if args.max_concurrent < 1:
    raise UsageError(f"--max_concurrent {args.max_concurrent}: must be at least 1")
  if not args.max_request_mb > 0:
    raise UsageError(f"--max_request_mb {args.max_request_mb:g}: must be positive")
  from tfcomp import serve  # pylint: disable=import-outside-toplevel
  return serve.run(args.model_dir, args.host, args.port, out=out, log=err,
                   max_concurrent=args.max_concurrent,
                   max_request_bytes=max(1, int(args.max_request_mb * (1 << 20))),
                   verbose=args.verbose)


COMMANDS = {"compress": cmd_compress, "decompress": cmd_decompress, "info": cmd_info,
            "models": cmd_models, "bench": cmd_bench, "serve": cmd_serve}


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
  # Libraries' own warnings (imagecodecs, absl, Pillow's on damaged files) would add lines
  # to stderr, where each problem gets one line of ours.
  for name in ("imagecodecs", "absl", "tensorflow"):
    logging.getLogger(name).setLevel(logging.CRITICAL)
  warnings.simplefilter("ignore")
  try:
    return COMMANDS[args.command](args, out, err) or 0
  except UsageError as e:
    err.write(f"tfcomp: error: {e}\n")
    return EXIT_USAGE
  except BrokenPipeError:
    # The reader went away (`tfcomp models | head`): stop quietly, as Unix tools do, and
    # keep the interpreter's final flush from failing again.
    if out is sys.stdout:
      os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_BROKEN_PIPE
  except _EXPECTED as e:
    err.write(f"tfcomp: error: {_message(e)}\n")
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


def run():
  sys.exit(main(sys.argv[1:]))
