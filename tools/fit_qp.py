"""Fits RC's QP classifier: which base-layer quantizer codes an image smallest.

    python tools/fit_qp.py --weights runs/rc-small/model.npz --train ../shared/datasets/train \
        --out runs/rc-small/model-qp.npz [--limit 200]

RC (Mentzer et al., CVPR 2020) picks the base layer's quantizer Q per image with a
classifier trained on the Q that codes each training image smallest. Here, each training
image is coded at every Q of the model's qp_choices (the real base layer, the residual's
estimated bits under the trained model), and a linear softmax rule on image statistics
(tfcomp.models.rc.qp_features) is fitted to minimize the expected excess over the best Q.
The statistics are few, so a few hundred images fit it; 5-fold cross-validation reports
how it does on images it was not fitted to, beside the fixed QP and the oracle (every Q
tried). The weights go into the model's config (`qp_classifier`), written to --out with
the model's weights unchanged.
"""
import json

import numpy as np
from absl import app, flags

import toolbox  # first: it puts the repository on the path
from tfcomp import data, io as tfcomp_io, models  # pylint: disable=wrong-import-order
from tfcomp.models import rc

FLAGS = flags.FlagValues()
flags.DEFINE_string("weights", None, "an RC model .npz (tools/train.py --model rc)",
                    flag_values=FLAGS)
flags.DEFINE_string("train", None, "images to fit on (folder or glob)", flag_values=FLAGS)
flags.DEFINE_string("out", None, "the .npz to write: the model with its classifier",
                    flag_values=FLAGS)
flags.DEFINE_integer("limit", 0, "fit on every k-th image so that at most this many are "
                     "used (0: all)", flag_values=FLAGS)
flags.DEFINE_float("l2", 1e-3, "weight decay of the classifier", flag_values=FLAGS)

FOLDS = 5
_STEPS, _RATE = 3000, 0.5


def fit(features, excess, l2):
  """Weights [F + 1, Q] of a softmax rule minimizing the mean expected relative excess
  `excess` [N, Q] (0 at each image's best Q) plus l2 * |W|^2, by gradient descent on
  standardized features (folded back into the returned weights)."""
  mean, std = features.mean(0), features.std(0) + 1e-9
  z = np.concatenate([(features - mean) / std, np.ones((len(features), 1))], 1)
  w = np.zeros((z.shape[1], excess.shape[1]))
  for _ in range(_STEPS):
    logits = z @ w
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    expected = (p * excess).sum(1, keepdims=True)
    grad = z.T @ (p * (excess - expected)) / len(z) + 2 * l2 * w
    w -= _RATE * grad
  # Back to raw features: z_f = (x_f - mean_f) / std_f.
  raw = w[:-1] / std[:, None]
  bias = w[-1] - (mean / std) @ w[:-1]
  return np.concatenate([raw, bias[None]], 0)


def picks(weights, features):
  return np.argmax(np.concatenate([features, np.ones((len(features), 1))], 1) @ weights, 1)


def main(argv):
  """Runs the tool on a full command line (program name first); returns the report."""
  argv = toolbox.parse(FLAGS, __doc__, argv)
  if argv is None:
    return None
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  for name in ("weights", "train", "out"):
    if not getattr(FLAGS, name):
      raise app.UsageError(f"--{name} is required")
  family, model = models.load(FLAGS.weights)
  if family != "rc":
    raise app.UsageError(f"--weights holds a {family} model; the QP classifier is RC's")
  files = data.list_files(FLAGS.train)
  if FLAGS.limit and len(files) > FLAGS.limit:
    files = files[::-(-len(files) // FLAGS.limit)]
  block = model.block_size
  features, costs = [], []
  for i, path in enumerate(files):
    image = tfcomp_io.read_image(path)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
      continue
    h, w = image.shape[0] // block * block, image.shape[1] // block * block
    if not h or not w:
      continue
    image = image[:h, :w]
    per_qp = model.qp_costs(image)
    features.append(rc.qp_features(image))
    costs.append([sum(per_qp[q]) / image.size for q in model.qp_choices])
    print(f"{i + 1}/{len(files)} {path}: best QP "
          f"{model.qp_choices[int(np.argmin(costs[-1]))]}", flush=True)
  if len(features) < FOLDS:
    raise app.UsageError(f"need at least {FOLDS} 8-bit RGB images, found {len(features)}")
  features, costs = np.array(features), np.array(costs)
  excess = costs / costs.min(1, keepdims=True) - 1
  rows = np.arange(len(costs))
  folds = np.arange(len(costs)) % FOLDS
  held_out = np.empty(len(costs), int)
  for k in range(FOLDS):
    weights = fit(features[folds != k], excess[folds != k], FLAGS.l2)
    held_out[folds == k] = picks(weights, features[folds == k])
  weights = fit(features, excess, FLAGS.l2)
  fixed = model.qp_choices.index(model.qp) if model.qp in model.qp_choices else None
  report = {
      "images": len(costs), "qp_choices": list(model.qp_choices),
      "estimated_bpsp": {
          "oracle": float(costs.min(1).mean()),
          "classifier_cross_validated": float(costs[rows, held_out].mean()),
          "classifier_fitted": float(costs[rows, picks(weights, features)].mean()),
          **({f"fixed_qp{model.qp}": float(costs[:, fixed].mean())} if fixed is not None
             else {}),
          **{f"qp{q}": float(costs[:, j].mean()) for j, q in enumerate(model.qp_choices)}},
      "oracle_qp_counts": {str(q): int(np.sum(costs.argmin(1) == j))
                           for j, q in enumerate(model.qp_choices)}}
  model.qp_classifier = weights
  models.save(model, family, FLAGS.out)
  print(json.dumps(report, indent=1))
  return report


if __name__ == "__main__":
  toolbox.run(main)
