r"""Trains a tfcomp model.

    python tools/train.py --model l3c --config small --train ../shared/datasets/train \
        --eval ../shared/datasets/kodak --logdir runs/l3c-small [--set num_blocks=2]

The config is configs/<model>/<config>.json (or a path to a .json file): the model's
constructor arguments; `--set key=value` overrides one (value parsed as JSON). Re-running
with the same --logdir resumes; --restore starts from another run's weights. A model .npz
may hold a smaller model than the config, e.g. one stack for `--set num_stacks=2`, two
blocks for `--set num_blocks=4` or 32 features for `--set num_features=48`: the new
residual stacks and blocks start as the identity, and nothing reads the new features
until training moves the zeros in front of them, so the grown model starts out coding as
the restored one did.
HiFiC's loss holds LPIPS, whose weights tfcomp does not ship: --lpips_weights names them
(else $TFCOMP_LPIPS_WEIGHTS, else ../shared/weights/lpips-alexnet-v0.1.npz). Its two
stages: the first without the discriminator, then the GAN warm-started from it:

    python tools/train.py --model hific --config small-mi --set beta=0 --logdir runs/base ...
    python tools/train.py --model hific --config small-lo --restore runs/base/model.npz \
        --logdir runs/lo ...

The best weights (by eval loss) land in
<logdir>/model.npz; TensorBoard reads <logdir>.

--batch_size is the global batch; --strategy spreads it over replicas with tf.distribute:

    default       this process, one device
    mirrored      every GPU of this host (MirroredStrategy), e.g. 4 GPUs:
                  python tools/train.py --strategy mirrored --batch_size 64 ...
    multi_worker  one process per host (MultiWorkerMirroredStrategy), each told the
                  cluster and its own task by TF_CONFIG, all with the same flags and a
                  --logdir every host can reach (a shared file system):
                  TF_CONFIG='{"cluster": {"worker": ["host1:2222", "host2:2222"]},
                              "task": {"type": "worker", "index": 0}}' \
                      python tools/train.py --strategy multi_worker ...   (index 1 on host2)

Worker 0 (or a "chief" task) writes the summaries, evaluates and saves model.npz. If a
worker dies the others stop with an error; start all of them again with the same
command and they resume from the last checkpoint.
"""
import json
import os

from absl import app, flags

import toolbox  # first: it puts the repository on the path
from tfcomp import configs, lpips, training  # pylint: disable=wrong-import-order

# Its own flag registry, so that tests can import several tools into one process.
FLAGS = flags.FlagValues()
flags.DEFINE_string("model", None, "model family, e.g. l3c", flag_values=FLAGS)
flags.DEFINE_string("config", "small", "config name under configs/<model>/, or a .json path",
                    flag_values=FLAGS)
flags.DEFINE_multi_string("set", [], "override a config field: key=value (value is JSON)",
                          flag_values=FLAGS)
flags.DEFINE_string("train", None, "training images: folder, glob or tfds:NAME", flag_values=FLAGS)
flags.DEFINE_string("eval", "", "evaluation images (folder, glob or tfds:NAME)", flag_values=FLAGS)
flags.DEFINE_string("logdir", None, "checkpoints, summaries and model.npz go here",
                    flag_values=FLAGS)
flags.DEFINE_string("restore", "", "initialize from a checkpoint directory or a model .npz "
                    "(of this config or a smaller one of the same family)",
                    flag_values=FLAGS)
defaults = training.TrainOptions(train="", logdir="")
flags.DEFINE_integer("steps", defaults.steps, "train until this global step", flag_values=FLAGS)
flags.DEFINE_integer("batch_size", defaults.batch_size, "crops per step", flag_values=FLAGS)
flags.DEFINE_integer("crop_size", defaults.crop_size, "side of the square training crops",
                     flag_values=FLAGS)
flags.DEFINE_float("lr", defaults.learning_rate, "initial Adam learning rate", flag_values=FLAGS)
flags.DEFINE_integer("lr_half_life", defaults.lr_half_life, "steps per halving of the lr",
                     flag_values=FLAGS)
flags.DEFINE_float("min_lr", defaults.min_learning_rate, "learning-rate floor", flag_values=FLAGS)
flags.DEFINE_integer("checkpoint_every", defaults.checkpoint_every, "steps between checkpoints",
                     flag_values=FLAGS)
flags.DEFINE_integer("eval_every", defaults.eval_every, "steps between evaluations",
                     flag_values=FLAGS)
flags.DEFINE_integer("eval_limit", 0, "evaluate on the first N eval images only (0: all)",
                     flag_values=FLAGS)
flags.DEFINE_integer("summary_every", defaults.summary_every, "steps between summaries",
                     flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "seed of the crops and the initialization", flag_values=FLAGS)
flags.DEFINE_string("cache_dir", "", "where inputs derived from the training images are "
                    "kept between runs (RC's base layers); default: LOGDIR/cache",
                    flag_values=FLAGS)
flags.DEFINE_string("lpips_weights", None, "LPIPS-AlexNet weights (.npz) for losses that "
                    "hold LPIPS (HiFiC); default: $TFCOMP_LPIPS_WEIGHTS, then "
                    "../shared/weights", flag_values=FLAGS)
flags.DEFINE_enum("strategy", "default", training.STRATEGIES,
                  "how tf.distribute spreads the global batch: this device, every local "
                  "GPU, or the workers of TF_CONFIG", flag_values=FLAGS)


def main(argv):
  """Runs the tool on a full command line (program name first)."""
  argv = toolbox.parse(FLAGS, __doc__, argv)
  if argv is None:
    return
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  for name in ("model", "train", "logdir"):
    if not getattr(FLAGS, name):
      raise app.UsageError(f"--{name} is required")
  if FLAGS.lpips_weights:
    try:
      # The models find the weights where tfcomp.lpips.load looks without a path.
      os.environ[lpips.WEIGHTS_ENV] = lpips.weights_path(FLAGS.lpips_weights)
    except FileNotFoundError as e:
      raise app.UsageError(f"--lpips_weights: {e}") from None
  # First: MultiWorkerMirroredStrategy must exist before TensorFlow runs anything else.
  strategy = training.make_strategy(FLAGS.strategy)
  config = configs.load(FLAGS.model, FLAGS.config, FLAGS.set)
  options = training.TrainOptions(
      train=FLAGS.train, logdir=FLAGS.logdir, eval=FLAGS.eval, steps=FLAGS.steps,
      batch_size=FLAGS.batch_size, crop_size=FLAGS.crop_size, learning_rate=FLAGS.lr,
      lr_half_life=FLAGS.lr_half_life, min_learning_rate=FLAGS.min_lr,
      checkpoint_every=FLAGS.checkpoint_every, eval_every=FLAGS.eval_every,
      eval_limit=FLAGS.eval_limit, summary_every=FLAGS.summary_every, seed=FLAGS.seed,
      restore=FLAGS.restore, cache_dir=FLAGS.cache_dir)
  print(f"training {FLAGS.model} {json.dumps(config)}", flush=True)
  scalars = training.train(FLAGS.model, config, options,
                           log=lambda line: print(line, flush=True),
                           strategy=strategy)
  print(json.dumps(scalars))


if __name__ == "__main__":
  toolbox.run(main)
