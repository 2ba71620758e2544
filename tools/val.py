"""Evaluates a tfcomp model on a dataset: estimated rates, and real ones with --real_bpp.

    python tools/val.py --model l3c-small-v3 ../shared/datasets/kodak [--real_bpp]
    python tools/val.py --weights runs/l3c-small/model.npz "kodak/*.png" --real_bpp

DATASET is a folder, an (escaped) glob or tfds:NAME. Per image it reports the estimated
rate from the model's cross-entropy (bits of the coded tiles; bpsp for lossless models, bpp
for lossy ones). --real_bpp also writes the real file, decodes it, checks the result
(bit-exact for lossless models; identical to the estimate path's reconstruction for lossy
ones) and reports the real rate from the file size, its overhead over the estimate, and the
encode and decode seconds. Lossy models also get LPIPS per image and, over the set,
fd_alex256: the Fréchet distance between real and reconstructed 256x256 patches on
LPIPS-AlexNet features (HiFiC's FID/256 protocol on other features; it is not FID), when
the LPIPS weights are found (--lpips_weights, else $TFCOMP_LPIPS_WEIGHTS, else
../shared/weights); without them both are left out with a warning. Results:
<out>/measures.csv (per image) and <out>/results.json (means). --refine_steps N
(hyperprior models) evaluates the encoder that fits the latents to each image in N steps
(`tfcomp compress --refine_steps`), on both paths; --save_ours writes reconstructions to
<out>/imgs; --sample DIR writes the L3C paper's samples (each image re-drawn from each
auxiliary scale upward). --qp_oracle (RC) adds the base layer's QP: the classifier's pick
beside the best QP of every one tried and the model's fixed one. --effort N (learned
lossless models) codes the real files at that
effort (`tfcomp compress --effort`; default 2, the coder adapting to each image, whose real
rate lies a few percent under the estimate, which is the model's alone: effort 1).
"""
import csv
import json
import os
import time

import numpy as np
from absl import app, flags

import toolbox  # first: it puts the repository on the path
from tfcomp import bench, codecs, data, io as tfcomp_io, metrics  # pylint: disable=wrong-import-order

# Its own flag registry, so that tests can import several tools into one process.
FLAGS = flags.FlagValues()
flags.DEFINE_string("model", None, "zoo model name (see `tfcomp models`)", flag_values=FLAGS)
flags.DEFINE_string("weights", None, "a model .npz written by tools/train.py (instead of "
                    "--model)", flag_values=FLAGS)
flags.DEFINE_bool("real_bpp", False, "write real files, decode and verify them", flag_values=FLAGS)
flags.DEFINE_string("out", "val_out", "folder for measures.csv, results.json and imgs/",
                    flag_values=FLAGS)
flags.DEFINE_bool("save_ours", False, "write the reconstructions to <out>/imgs", flag_values=FLAGS)
flags.DEFINE_string("sample", None, "write the paper's samples to this folder (L3C)",
                    flag_values=FLAGS)
flags.DEFINE_integer("refine_steps", 0, "hyperprior models: fit the latents to each image in "
                     "this many steps before estimating and coding", flag_values=FLAGS)
flags.DEFINE_integer("effort", None, "learned lossless models: the effort of the real files "
                     "(default: the codec's, 2)", flag_values=FLAGS)
flags.DEFINE_bool("qp_oracle", False, "RC models: also code each image's base layer at every "
                  "QP the model chooses from and report the estimated bpsp at the "
                  "classifier's pick, at the fixed QP and at the best one (the oracle)",
                  flag_values=FLAGS)
flags.DEFINE_integer("limit", 0, "evaluate the first N images only (0: all)", flag_values=FLAGS)
flags.DEFINE_string("lpips_weights", None, "LPIPS-AlexNet weights (.npz) for lossy models' "
                    "LPIPS and fd_alex256 (default: $TFCOMP_LPIPS_WEIGHTS, then "
                    "../shared/weights)", flag_values=FLAGS)


def evaluate_image(codec, name, image, real, refine_steps=0, lpips_model=None, effort=None):
  """One row of measures for `image` and its reconstruction; raises AssertionError if a
  real decode is wrong. `lpips_model` (tfcomp.lpips.LPIPS): also measure LPIPS; `effort`:
  of the real file (None: the codec's default)."""
  h, w, c = image.shape
  unit = h * w * c if codec.lossless else h * w
  rate = "bpsp" if codec.lossless else "bpp"
  row = {"image": name, "height": h, "width": w, "channels": c}
  # Non-learned codecs (fixedpred) have no cross-entropy estimate: real rates only.
  if not hasattr(codec, "estimate"):
    estimate = None
  else:
    estimate = (codec.estimate(image, refine_steps=refine_steps) if refine_steps
                else codec.estimate(image))
  if estimate is None and not real:
    raise app.UsageError(f"{codec.name} has no estimated rate; add --real_bpp")
  if estimate is not None:
    row[f"estimated_{rate}"] = estimate["bits"] / unit
  x_hat = estimate.get("x_hat", image) if estimate else image
  if not codec.lossless:
    row["psnr"] = metrics.psnr(image, x_hat)
    row["ms_ssim"] = metrics.ms_ssim(image, x_hat) if min(h, w) >= 161 else None
    if lpips_model is not None:
      row["lpips"] = metrics.lpips(image, x_hat, lpips_model)
  if real:
    started = time.perf_counter()
    encoded = codecs.compress(image, codec, refine_steps=refine_steps, effort=effort)
    encode_s = time.perf_counter() - started
    started = time.perf_counter()
    decoded, _ = codecs.decompress(encoded, lambda _: codec)
    decode_s = time.perf_counter() - started
    if not np.array_equal(decoded, x_hat):
      raise AssertionError(f"{name}: the decoded image differs from the "
                           f"{'input' if codec.lossless else 'estimate path reconstruction'}")
    row[f"real_{rate}"] = 8 * len(encoded) / unit
    if estimate is not None:
      row["overhead_percent"] = 100 * (row[f"real_{rate}"] / row[f"estimated_{rate}"] - 1)
    row["encode_s"] = encode_s
    row["decode_s"] = decode_s
    x_hat = decoded
  return row, x_hat


def qp_measures(codec, image):
  """RC: the classifier's QP, the oracle's, and the estimated bpsp (real base bits plus the
  residual's cross-entropy, on the padded image) at each and at the model's fixed QP."""
  model = codec.model
  padded = codec.padded(image)[0]
  costs = {qp: sum(bits) / image.size for qp, bits in model.qp_costs(padded).items()}
  pick = model.choose_qp(padded)
  oracle = min(costs, key=costs.get)
  fixed = costs[model.qp] if model.qp in costs else sum(
      model.qp_costs(padded, [model.qp])[model.qp]) / image.size
  return {"qp": pick, "oracle_qp": oracle, "estimated_bpsp_at_qp": costs[pick],
          "estimated_bpsp_oracle": costs[oracle], f"estimated_bpsp_qp{model.qp}": fixed}


def write_samples(codec, name, image, folder):
  model = codec.model
  stem = os.path.splitext(os.path.basename(name))[0]
  tile = codec.padded(image)
  tfcomp_io.write_png(os.path.join(folder, f"{stem}_original.png"), image)
  for s in range(1, model.num_scales + 1):
    drawn = np.asarray(model.sample(tile, s))[0, :image.shape[0], :image.shape[1]]
    tfcomp_io.write_png(os.path.join(folder, f"{stem}_from_z{s}.png"),
                        drawn[..., :image.shape[2]])


def _format(measures):
  """One printed line of measures; an undefined one (None) reads n/a."""
  def text(value):
    if value is None:
      return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
  return " ".join(f"{k}={text(v)}" for k, v in measures.items())


def main(argv):
  """Runs the tool on a full command line (program name first)."""
  argv = toolbox.parse(FLAGS, __doc__, argv)
  if argv is None:
    return
  if len(argv) != 2:
    raise app.UsageError("give one DATASET (a folder, an escaped glob or tfds:NAME)")
  codec = toolbox.load_codec(FLAGS.model, FLAGS.weights)
  lpips_model = None
  if not codec.lossless:
    try:
      lpips_model, _ = bench.load_lpips(FLAGS.lpips_weights)
    except bench.UsageError as e:
      raise app.UsageError(str(e)) from None
  elif FLAGS.lpips_weights:
    raise app.UsageError(f"--lpips_weights: {codec.name} is lossless; LPIPS is for lossy "
                         "models")
  if FLAGS.qp_oracle and not hasattr(getattr(codec, "model", None), "qp_costs"):
    raise app.UsageError(f"--qp_oracle needs a model with a base-layer QP (RC); {codec.name} "
                         "has none")
  if FLAGS.sample and not hasattr(getattr(codec, "model", None), "sample"):
    raise app.UsageError(f"--sample needs a model that can sample; {codec.name} cannot")
  try:
    codecs.check_refine_steps(codec, FLAGS.refine_steps)
  except ValueError as error:
    raise app.UsageError(f"--refine_steps: {error}") from None
  try:
    codecs.check_effort(codec, FLAGS.effort)
  except ValueError as error:
    raise app.UsageError(f"--effort: {error}") from None
  images = data.load_images(argv[1], limit=FLAGS.limit or None)
  os.makedirs(FLAGS.out, exist_ok=True)
  for folder in ([os.path.join(FLAGS.out, "imgs")] if FLAGS.save_ours else []) + (
      [FLAGS.sample] if FLAGS.sample else []):
    os.makedirs(folder, exist_ok=True)
  rows, pairs = [], []
  for name, image in images:
    row, x_hat = evaluate_image(codec, name, image, FLAGS.real_bpp, FLAGS.refine_steps,
                                lpips_model, FLAGS.effort)
    if FLAGS.qp_oracle:
      row.update(qp_measures(codec, image))
    rows.append(row)
    if lpips_model is not None:
      pairs.append((image, x_hat))
    print(_format(row), flush=True)
    if FLAGS.save_ours:
      stem = os.path.splitext(name.replace(os.sep, "_"))[0]
      tfcomp_io.write_png(os.path.join(FLAGS.out, "imgs", f"{stem}.png"), x_hat)
    if FLAGS.sample:
      write_samples(codec, name, image, FLAGS.sample)
  keys = list(rows[0])
  with open(os.path.join(FLAGS.out, "measures.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, keys)
    writer.writeheader()
    writer.writerows(rows)
  means = {k: metrics.mean_of_defined(r[k] for r in rows)
           for k in keys if isinstance(rows[0][k], float) or rows[0][k] is None}
  results = {"model": codec.name, "dataset": argv[1], "refine_steps": FLAGS.refine_steps,
             "effort": FLAGS.effort if FLAGS.effort is not None else codec.default_effort,
             "images": len(rows), "mean": means}
  if pairs:
    results["fd_alex256"], results["fd_patches"] = metrics.patch_fd(*zip(*pairs), lpips_model)
    print(f"{_format({'fd_alex256': results['fd_alex256']})} over {results['fd_patches']} "
          "patches of 256x256")
  with open(os.path.join(FLAGS.out, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  print("mean " + _format(means))


if __name__ == "__main__":
  toolbox.run(main)
