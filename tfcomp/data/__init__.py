"""Image inputs for training and evaluation, selected by one spec string everywhere.

A spec is a folder (all images under it), a glob (`"kodak/*.png"`, quote it in shells),
or `tfds:NAME[/SPLIT]` for a TFDS dataset, including tfcomp's builders for the standard
evaluation sets (`tfds:tfcomp_kodak`, `tfds:tfcomp_clic2020_mobile`,
`tfds:tfcomp_clic2020_professional`, `tfds:tfcomp_div2k_valid`,
`tfds:tfcomp_open_images_val500`). Those build from `manual_dir` when it holds the
images, and download otherwise.

    train_dataset(spec) -> batches of random uint8 crops [B, S, S, 3], shuffled, repeated
    train_dataset(spec, companions=...) -> crops [B, S, S, 6]: each image beside one of
                           its companion images (RC's base reconstructions), cropped alike
    eval_dataset(spec)  -> {"name", "image"} one full image at a time, in a fixed order
    load_images(spec)   -> [(name, uint8 array)] with exact samples, for the benchmarks
"""
import glob
import os

import tensorflow as tf

from tfcomp import io as tfcomp_io
from tfcomp.data import tfds_builders

TFDS_PREFIX = "tfds:"


def is_tfds(spec):
  return spec.startswith(TFDS_PREFIX)


def list_files(spec):
  """Sorted image paths of a folder or glob spec; ValueError if there are none."""
  if os.path.isdir(spec):
    files = tfds_builders.image_files(spec)
  else:
    files = sorted(f for f in glob.glob(spec, recursive=True) if os.path.isfile(f))
  if not files:
    raise ValueError(f"no images found for {spec!r} (a folder, a glob or tfds:NAME[/split])")
  return files


def _tfds_dataset(spec, data_dir=None, manual_dir=None):
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  name, _, split = spec[len(TFDS_PREFIX):].partition("/")
  builder = tfds.builder(name, data_dir=data_dir)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  split = split or next(iter(builder.info.splits))
  return builder.as_dataset(split=split, shuffle_files=False).map(
      lambda x: {"name": x["filename"], "image": x["image"]})


def _decode(path):
  image = tf.image.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
  return {"name": tf.strings.split(path, os.sep)[-1], "image": tf.image.convert_image_dtype(
      image, tf.uint8, saturate=True)}


def eval_dataset(spec, data_dir=None, manual_dir=None):
  """Full images as {"name": string, "image": uint8 [H, W, 3]}, in a fixed order."""
  if is_tfds(spec):
    return _tfds_dataset(spec, data_dir, manual_dir)
  return tf.data.Dataset.from_tensor_slices(list_files(spec)).map(_decode)


def train_dataset(spec, crop_size=128, batch_size=8, seed=0, shuffle_buffer=256,
                  data_dir=None, manual_dir=None, repeat=True, augment=False,
                  input_context=None, companions=None):
  """Random crops [batch, crop, crop, 3] uint8, shuffled with `seed`, batched, prefetched.

  Images smaller than the crop on either side are skipped. `augment` adds random
  horizontal flips (from the same stateless seeds).

  `companions` ({image path: [paths of images of the same size]}, the same number for
  every image of a folder or glob spec) pairs each crop with the same crop of one of
  its companions, drawn from the same stateless seeds: crops [batch, crop, crop, 6].

  With a tf.distribute.InputContext, `batch_size` is the global batch and this is the
  dataset of one input pipeline (one worker): its replicas' batches, each
  `input_context.get_per_replica_batch_size(batch_size)` crops. Every pipeline walks the
  same seeded stream of images and crops only the positions i = pipeline id (mod number
  of pipelines) of it; so at each step the replicas of all workers together hold exactly
  the global batch that one process with the same seed trains on.
  """
  if crop_size < 1 or batch_size < 1:
    raise ValueError(f"crop_size and batch_size must be positive, got {crop_size}, "
                     f"{batch_size}")
  if companions is None:
    images = eval_dataset(spec, data_dir, manual_dir).map(lambda x: x["image"])
  else:
    images, count = _with_companions(spec, companions)
  images = images.cache() if not is_tfds(spec) else images
  if repeat:
    images = images.repeat()
  images = images.shuffle(shuffle_buffer, seed=seed)
  shape = tf.constant([crop_size, crop_size, 3 if companions is None else 6])
  images = images.filter(lambda x: tf.reduce_all(tf.shape(x)[:2] >= crop_size))
  # Stateless crops keyed by (seed, position in the stream): the same seed gives the same
  # crops in every run, however the pipeline is traced or parallelized.
  def crop(i, x):
    key = tf.stack([tf.constant(seed, tf.int64), i])
    if companions is not None:
      j = 3 + 3 * tf.random.stateless_uniform([], key + 2, 0, count, tf.int32)
      x = tf.concat([x[..., :3], x[..., j:j + 3]], -1)
    x = tf.image.stateless_random_crop(x, shape, seed=key)
    return tf.image.stateless_random_flip_left_right(x, seed=key + 1) if augment else x

  positions = images.enumerate()
  if input_context is not None:
    positions = positions.shard(input_context.num_input_pipelines,
                                input_context.input_pipeline_id)
    batch_size = input_context.get_per_replica_batch_size(batch_size)
  crops = positions.map(crop, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return crops.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _with_companions(spec, companions):
  """(dataset of each image stacked with all its companions [H, W, 3 + 3n], n)."""
  if is_tfds(spec):
    raise ValueError("companion images need a folder or glob spec, not a TFDS dataset")
  files = list_files(spec)
  missing = [f for f in files if f not in companions]
  if missing:
    raise ValueError(f"no companions for {missing[0]!r} (and {len(missing) - 1} more)")
  counts = {len(companions[f]) for f in files}
  if len(counts) != 1 or not counts <= set(range(1, 1000)):
    raise ValueError(f"every image needs the same positive number of companions, got "
                     f"{sorted(counts)}")
  table = tf.constant([[f] + list(companions[f]) for f in files])

  def stack(paths):
    images = [_decode(paths[i])["image"] for i in range(table.shape[1])]
    shape = tf.shape(images[0])
    for i, image in enumerate(images[1:], 1):
      tf.debugging.assert_equal(tf.shape(image), shape,
                                message=f"companion {i} differs in size from its image")
    return tf.concat(images, -1)

  return tf.data.Dataset.from_tensor_slices(table).map(stack), table.shape[1] - 1


def load_images(spec, data_dir=None, manual_dir=None, limit=None):
  """[(name, image)] with the exact stored samples (8/16-bit, 1-4 channels for files; RGB
  uint8 for TFDS), sorted by name."""
  if is_tfds(spec):
    items = [(x["name"].decode(), x["image"]) for x in
             eval_dataset(spec, data_dir, manual_dir).as_numpy_iterator()]
  else:
    items = [(os.path.relpath(f, spec) if os.path.isdir(spec) else os.path.basename(f),
              tfcomp_io.read_image(f)) for f in list_files(spec)]
  items.sort(key=lambda item: item[0])
  return items[:limit] if limit else items

