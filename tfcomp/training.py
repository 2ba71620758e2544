"""The training loop every model family shares (driven by tools/train.py).

    train crops --model(x, training=True)--> out --model.compute_loss--> loss, scalars
    every checkpoint_every steps: checkpoint (model, optimizers, step) in logdir/ckpt
    every eval_every steps: mean scalars on the eval images; best model -> logdir/model.npz

A model with several optimizers (imgcomp: autoencoder, context model) defines
`loss_groups() -> [(scalar name, variables)]`; each group minimizes that scalar of
`loss_and_scalars(x, out, step)` over its variables with its own Adam (the step is
there for losses that follow a schedule, HiFiC's rate weight). A run resumes
from logdir's latest checkpoint; `restore` starts a new run from another
run's weights (a checkpoint directory or a model .npz). TensorBoard summaries go to
logdir/train and logdir/eval.
"""
import dataclasses
import hashlib
import json
import math
import os
import shutil
import time

import numpy as np
import tensorflow as tf

from tfcomp import data, models
from tfcomp.models import layers


@dataclasses.dataclass
class TrainOptions:
  train: str
  logdir: str
  eval: str = ""
  steps: int = 10000
  batch_size: int = 16
  crop_size: int = 128
  learning_rate: float = 5e-4
  lr_half_life: int = 4000  # steps over which the learning rate halves
  min_learning_rate: float = 1e-5
  checkpoint_every: int = 200
  eval_every: int = 500
  eval_limit: int = 0  # evaluate on the first N images only (0: all)
  summary_every: int = 50
  seed: int = 0
  restore: str = ""
  cache_dir: str = ""  # precomputed training inputs (RC's base layers); default logdir/cache

  def validate(self):
    for name in ("steps", "batch_size", "crop_size", "checkpoint_every", "eval_every",
                 "summary_every", "lr_half_life"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
    if not self.learning_rate > 0:
      raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
    if not 0 <= self.min_learning_rate <= self.learning_rate:
      raise ValueError(f"min_learning_rate must be in [0, learning_rate="
                       f"{self.learning_rate}], got {self.min_learning_rate}")
    if self.eval_limit < 0:
      raise ValueError(f"eval_limit must be 0 (all) or positive, got {self.eval_limit}")


def loss_groups(model):
  """[(scalar name, variables)] of `model`: its own groups, or "loss" over all variables."""
  if hasattr(model, "loss_groups"):
    return model.loss_groups()
  return [("loss", model.trainable_variables)]


def learning_rate(options, step):
  """Exponential decay with a half-life, floored at min_learning_rate."""
  decayed = options.learning_rate * 0.5 ** (tf.cast(step, tf.float32) / options.lr_half_life)
  return tf.maximum(decayed, options.min_learning_rate)


def _eval_crop(image, block):
  """Largest top-left crop whose sides are multiples of `block` (at least one block)."""
  h = max(block, image.shape[0] // block * block)
  w = max(block, image.shape[1] // block * block)
  if image.shape[0] < h or image.shape[1] < w:
    image = np.pad(image, ((0, max(0, h - image.shape[0])), (0, max(0, w - image.shape[1])),
                           (0, 0)), mode="edge")
  return image[:h, :w]


def evaluate(model, images):
  """Mean of the model's scalars over [(name, uint8 image)] (one image at a time)."""
  block = getattr(model, "block_size", 1)
  totals = {}
  for _, image in images:
    x = _eval_crop(image, block)[None]
    out = model(tf.constant(x), training=False)
    _, scalars = model.loss_and_scalars(x, out)
    for k, v in scalars.items():
      totals[k] = totals.get(k, 0.0) + float(v)
  return {k: v / len(images) for k, v in totals.items()}


def named_weights(model):
  """{path: variable} of `model`, each path the names of the layers down to the variable
  ("g_a/stack0/last/kernel"): layer names repeat across g_a and g_s, so variable names
  alone are ambiguous, and Keras's layer indices shift when a model grows. Weights the
  model holds itself or through tf.Modules (tfc's entropy models) keep their full names."""
  named, seen = {}, set()

  def walk(layer, prefix):
    # Keras has no public list of a layer's direct sublayers.
    children = list(layer._flatten_layers(include_self=False,  # pylint: disable=protected-access
                                          recursive=False))
    below = {id(v) for child in children for v in child.weights}
    for v in layer.weights:
      if id(v) not in below and id(v) not in seen:  # a shared layer: its first path
        seen.add(id(v))
        name = prefix + (v.name.split("/")[-1] if prefix else v.name).split(":")[0]
        if name in named:
          raise ValueError(f"{type(model).__name__} has two weights at {name!r}")
        named[name] = v
    for child in children:
      walk(child, f"{prefix}{child.name}/")

  walk(model, "")
  return named


def _restore_weights(model, family, source, log=print):
  """Initializes `model` from a model .npz or a checkpoint (a checkpoint directory means
  its latest one); returns the path restored, for the log.

  A .npz may hold a model of a family this one extends (a hyperprior starts a HiFiC of
  the same sizes), or a smaller model of the same family (fewer residual stacks or blocks,
  or fewer features, say): every one of its weights must exist in `model` under the same
  name and shape, or, for a convolution, a wider one (see _widened); the weights it lacks
  keep their initial values, except that blocks added to a restored residual body become
  the identity (new residual bodies already start as one). The grown model so starts out
  computing exactly what the restored one did. A frozen .npz (a lossy zoo model) restores
  into a training model without its range-coding tables.
  """
  if source.endswith(".npz"):
    restored_family, restored = models.load(source)
    # The same family, or one this model's family extends (a hyperprior for HiFiC).
    if not isinstance(model, type(restored)):
      raise ValueError(f"{source} holds a model of family {restored_family!r}, "
                       f"not {family!r}")
    target, weights = named_weights(model), named_weights(restored)
    restored_config = restored.get_config()
    if restored_config.get("compression") and not model.get_config().get("compression"):
      # A frozen model (a zoo entry, say) also holds the range-coding tables that freezing
      # derived from its prior; training changes the prior and freezing derives them anew.
      plain = models.build(restored_family, {**restored_config, "compression": False})
      models.build_variables(plain)
      for name in set(weights) - set(named_weights(plain)):
        del weights[name]
    groups = _conv_channel_groups(model)
    values = {}
    for name, w in weights.items():
      if name in target:
        values[name] = _widened(target[name], w.numpy(), groups.get(id(target[name])))
      if values.get(name) is None:
        found = tuple(target[name].shape) if name in target else "absent"
        raise ValueError(f"{source} does not fit this {family} config: its weight {name} "
                         f"{tuple(w.shape)} is {found} here")
    for name, value in values.items():
      target[name].assign(value)
    added = sorted(set(target) - set(weights))
    restored_ids = {id(target[name]) for name in weights}
    restored = lambda layer: any(id(v) in restored_ids for v in layer.weights)  # noqa: E731
    for body in model._flatten_layers(include_self=False):  # pylint: disable=protected-access
      if isinstance(body, layers.ResidualBody) and restored(body):
        for block in body.blocks:
          if not restored(block):
            block.make_identity()
    if added:
      log(f"{len(added)} weights not in {source} keep their initial values: "
          f"{', '.join(added)}")
    return source
  path = tf.train.latest_checkpoint(source) or source
  tf.train.Checkpoint(model=model).restore(path).expect_partial()
  return path


def _conv_channel_groups(model):
  """{id(variable): per-axis group counts} of the kernels and biases of conv() layers."""
  groups = {}
  for layer in model._flatten_layers(include_self=False):  # pylint: disable=protected-access
    if layers.is_conv(layer) and layer.built:
      in_groups, out_groups = layer.channel_groups
      groups[id(layer.kernel)] = (1, 1, in_groups, out_groups)
      groups[id(layer.bias)] = (out_groups,)
  return groups


# Added channels' initial values are scaled by this when a model is widened (see _widened).
ADDED_CHANNEL_SCALE = 1 / 16


def _widened(variable, value, groups):
  """`value` (a restored weight) fitted to `variable`, or None where it does not fit.

  An equal shape fits as it is. A narrower convolution (fewer channels in some of its
  channel groups, `groups` per axis) fits into the leading channels of each group; the
  weights reading the added input channels are zeroed, so the old channels compute what
  they did and the added ones, which start from the variable's initial values scaled by
  ADDED_CHANNEL_SCALE, are read by nothing until training moves those zeros: the widened
  model starts out computing what the restored one did.

  The scale is there for the exact path (tfcomp.exact): a convolution's input grid is set
  by its input's largest magnitude, so an added channel larger than every restored one
  would coarsen the grid the restored channels are rounded to. Started small, the added
  channels leave that to the restored ones (and a float model is unaffected either way);
  they still pass their 11-bit rounding, so the zeros reading them get gradients.
  """
  shape = tuple(variable.shape)
  if shape == value.shape:
    return value
  if groups is None or len(shape) != len(value.shape) or any(
      t < v or t % g or v % g for t, v, g in zip(shape, value.shape, groups)):
    return None
  split = lambda dims: [n for d, g in zip(dims, groups) for n in (g, d // g)]  # noqa: E731
  grown = (variable.numpy() * ADDED_CHANNEL_SCALE).reshape(split(shape))
  if len(shape) == 4:  # a kernel: nothing reads the added input channels yet
    grown[:, :, :, :, :, value.shape[2] // groups[2]:] = 0
  grown[tuple(slice(None) if i % 2 == 0 else slice(0, n)
              for i, n in enumerate(split(value.shape)))] = value.reshape(split(value.shape))
  return grown.reshape(shape)


def load_run(logdir):
  """(family, model, step): the model of a training run at its latest checkpoint."""
  try:
    with open(os.path.join(logdir, "config.json")) as f:
      run = json.load(f)
  except OSError as e:
    raise ValueError(f"{logdir} is not a training run (no readable config.json): {e}") from None
  path = tf.train.latest_checkpoint(os.path.join(logdir, "ckpt"))
  if path is None:
    raise ValueError(f"{logdir} has no checkpoint under ckpt/")
  model = models.build(run["family"], run["config"])
  models.build_variables(model)
  step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
  tf.train.Checkpoint(model=model, step=step).restore(path).expect_partial()
  return run["family"], model, int(step.numpy())


def weights_digest(model):
  """A short SHA-256 of every weight's value, by name: equal on workers in step."""
  digest = hashlib.sha256()
  for name, variable in sorted(named_weights(model).items()):
    digest.update(name.encode() + variable.numpy().tobytes())
  return digest.hexdigest()[:16]


STRATEGIES = ("default", "mirrored", "multi_worker")


def make_strategy(name):
  """The tf.distribute strategy called `name` (one of STRATEGIES).

  default: this process's one device. mirrored: every local GPU (or the CPU), one replica
  each. multi_worker: MultiWorkerMirroredStrategy over the cluster TF_CONFIG describes,
  with the local devices of each worker as its replicas.
  """
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multi_worker":
    if not os.environ.get("TF_CONFIG"):
      raise ValueError("strategy multi_worker needs TF_CONFIG (the cluster and this "
                       "worker's task), as tf.distribute.MultiWorkerMirroredStrategy reads it")
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise ValueError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")


def worker_task(strategy):
  """(is_chief, task_id) of this process in `strategy`'s cluster: the task "chief", or
  else worker 0, is the chief; a single process is its own chief, task 0."""
  resolver = getattr(strategy, "cluster_resolver", None)
  cluster = resolver.cluster_spec().as_dict() if resolver else {}
  if not cluster:
    return True, 0
  task_type, task_id = resolver.task_type, resolver.task_id or 0
  chief = task_type == "chief" or (task_type == "worker" and task_id == 0
                                   and "chief" not in cluster)
  return chief, task_id


def train(family, config, options, log=print, strategy=None):
  """Trains a `family` model built from `config`; returns the final eval scalars.

  `strategy` (a tf.distribute.Strategy; the default one if None) holds the model's
  replicas. options.batch_size is the global batch, split evenly across them; each
  replica's loss is scaled with tf.nn.compute_average_loss so that the summed gradients
  are those of the global batch's mean loss (exactly so for the families whose loss is a
  mean over examples, which is all but imgcomp's entropy-target hinge, applied per
  replica). Every worker trains the same steps and writes checkpoints, as
  MultiWorkerMirroredStrategy requires; the chief's, in logdir/ckpt, are the ones a
  restarted cluster resumes from (logdir must be shared by all workers), the others go to
  a scratch folder that is removed again. Summaries, evaluation and model.npz come from
  the chief alone.
  """
  options.validate()
  strategy = strategy or tf.distribute.get_strategy()
  replicas = strategy.num_replicas_in_sync
  if options.batch_size % replicas:
    raise ValueError(f"batch_size {options.batch_size} does not split evenly across "
                     f"{replicas} replicas")
  chief, task_id = worker_task(strategy)
  # The chief reports progress for the cluster; every worker says where it starts and ends.
  report = log if chief else lambda line: None  # noqa: E731
  # Keras draws unseeded initial values from Python's and NumPy's generators too.
  tf.keras.utils.set_random_seed(options.seed)
  # The seed's initial weights, drawn outside the strategy: its variable creators draw
  # initial values in an order of their own, and a run should start alike under any.
  initial = models.build(family, config)
  models.build_variables(initial)
  initial = named_weights(initial)
  with strategy.scope():
    model = models.build(family, config)
    models.build_variables(model)
    for name, variable in named_weights(model).items():
      variable.assign(initial[name])
    groups = loss_groups(model)
    optimizers = [tf.keras.optimizers.Adam(learning_rate(options, 0)) for _ in groups]
    # Slots now, not in the first step: a tf.function that creates variables is traced
    # twice, and tracing is most of a short run's time.
    for optimizer, (_, variables) in zip(optimizers, groups):
      optimizer.build(variables)
  # Plain variables: each worker counts its steps alike, and only the chief evaluates.
  step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
  best = tf.Variable(math.inf, dtype=tf.float64, trainable=False, name="best_eval_loss")
  os.makedirs(options.logdir, exist_ok=True)
  if chief:
    with open(os.path.join(options.logdir, "config.json"), "w") as f:
      json.dump({"family": family, "config": model.get_config(),
                 "options": dataclasses.asdict(options)}, f, indent=2)

  # The first optimizer keeps the name single-optimizer runs have always checkpointed.
  checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizers[0], step=step, best=best,
                                   **{f"optimizer_{i}": o for i, o in
                                      enumerate(optimizers) if i})
  checkpoints = os.path.join(options.logdir, "ckpt")
  manager = tf.train.CheckpointManager(
      checkpoint,
      checkpoints if chief else os.path.join(options.logdir, f".ckpt-worker{task_id}"),
      max_to_keep=3 if chief else 1)
  latest = tf.train.latest_checkpoint(checkpoints)
  if latest:
    checkpoint.restore(latest)
    log(f"resumed from {latest} at step {int(step)}")
  elif options.restore:
    log(f"initialized from {_restore_weights(model, family, options.restore, report)}")

  seed = options.seed + int(step)
  # A model that trains on images beside companions it derives from them (RC: the base
  # reconstructions) says which; they are made once into the cache.
  companions = None
  if hasattr(model, "training_companions"):
    companions = model.training_companions(
        data.list_files(options.train),
        options.cache_dir or os.path.join(options.logdir, "cache"), log=report)
  dataset = strategy.distribute_datasets_from_function(
      lambda context: data.train_dataset(options.train, options.crop_size, options.batch_size,
                                         seed=seed, augment=True, input_context=context,
                                         companions=companions))
  eval_images = (data.load_images(options.eval, limit=options.eval_limit or None)
                 if options.eval and chief else [])
  eval_images = [(n, im) for n, im in eval_images if im.ndim == 3 and im.shape[2] == 3
                 and im.dtype == np.uint8]
  if chief:
    train_writer = tf.summary.create_file_writer(os.path.join(options.logdir, "train"))
    eval_writer = tf.summary.create_file_writer(os.path.join(options.logdir, "eval"))
  else:
    train_writer = eval_writer = tf.summary.create_noop_writer()

  def replica_step(x):
    local_batch = tf.shape(x)[0]
    average = lambda mean: tf.nn.compute_average_loss(  # noqa: E731
        tf.fill([local_batch], mean), global_batch_size=options.batch_size)
    with tf.GradientTape(persistent=True) as tape:
      out = model(x, training=True)
      loss, scalars = model.loss_and_scalars(x, out, step=step)
      scaled = {name: average(scalars[name]) for name, _ in groups}
    grads = [tape.gradient(scaled[name], variables) for name, variables in groups]
    del tape
    finite = tf.reduce_all([tf.math.is_finite(scalars[name]) for name, _ in groups] +
                           [tf.reduce_all(tf.math.is_finite(g)) for group in grads
                            for g in group if g is not None])
    # A non-finite loss or gradient (rare, early in training) on any replica becomes a
    # zero update everywhere instead of poisoning every weight.
    finite = tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, tf.cast(tf.logical_not(finite), tf.float32)) == 0
    for optimizer, (_, variables), group in zip(optimizers, groups, grads):
      group = [tf.where(finite, g, tf.zeros_like(g)) for g in group]
      optimizer.apply_gradients(zip(group, variables))
    return loss, scalars, finite

  @tf.function
  def train_step(x):
    loss, scalars, finite = strategy.run(replica_step, args=(x,))
    mean = lambda v: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)  # noqa: E731
    return (mean(loss), {k: mean(v) for k, v in scalars.items()},
            strategy.experimental_local_results(finite)[0])

  def run_eval():
    scalars = evaluate(model, eval_images)
    with eval_writer.as_default(step=int(step)):
      for k, v in scalars.items():
        tf.summary.scalar(k, v)
    report(f"step {int(step)} eval " + " ".join(f"{k}={v:.4f}" for k, v in scalars.items()))
    if scalars["loss"] < float(best):
      best.assign(scalars["loss"])
      models.save(model, family, os.path.join(options.logdir, "model.npz"))
    return scalars

  scalars = {}
  started, started_step = time.time(), int(step)
  batches = iter(dataset)
  # A fixed number of steps over a repeated dataset: every worker stops at the same step,
  # so none waits on a collective the others never join.
  while int(step) < options.steps:
    x = next(batches)
    lr = float(learning_rate(options, step))
    for optimizer in optimizers:
      optimizer.learning_rate.assign(lr)
    loss, train_scalars, finite = train_step(x)
    step.assign_add(1)
    s = int(step)
    if s % options.summary_every == 0 or s == 1:
      with train_writer.as_default(step=s):
        for k, v in train_scalars.items():
          tf.summary.scalar(k, v)
        tf.summary.scalar("learning_rate", lr)
        if chief and (s % (options.summary_every * 10) == 0 or s == 1):
          local = strategy.experimental_local_results(x)[0]
          for k, v in model.summary_images(local, model(local, training=False)).items():
            tf.summary.image(k, v, max_outputs=2)
      seconds = max(time.time() - started, 1e-9)
      report(f"step {s} loss={float(loss):.4f}" + ("" if bool(finite) else " (skipped)") +
          f" lr={lr:.2e} {(s - started_step) / seconds:.2f} "
          f"steps/s {(s - started_step) * options.batch_size / seconds:.1f} examples/s")
    if s % options.checkpoint_every == 0:
      manager.save(checkpoint_number=s)
    if eval_images and s % options.eval_every == 0:
      scalars = run_eval()
  manager.save(checkpoint_number=int(step))
  log(f"finished at step {int(step)}, weights {weights_digest(model)}")
  if not chief:
    shutil.rmtree(manager.directory, ignore_errors=True)
  elif eval_images and int(step) % options.eval_every:
    scalars = run_eval()
  elif not eval_images:
    models.save(model, family, os.path.join(options.logdir, "model.npz"))
  # The workers leave together: one leaving first would look to the others, still busy
  # (the chief evaluating, say), like a failed worker.
  strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)),
                  axis=None)
  return scalars
