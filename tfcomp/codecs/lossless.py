"""Learned lossless codecs (L3C, SReC, ...): any model of the lossless contract, in tiles.

The model codes one padded tile at a time, in TF ops that also trace into a tf.function
(tfcomp.codecs.lossless_serving, the SavedModel of tools/export.py):

    model.compress(x [1, Hp, Wp, 3] uint8, height, width, channels) -> [scalar strings]
    model.decompress(streams, (Hp, Wp), height, width, channels) -> int32 [1, h, w, channels]

Tiling and padding rules (fixed by the format, so decoders agree):
  * the image is cut into TILE x TILE tiles in raster order (edge tiles are smaller), each
    coded independently, so memory is bounded by a tile whatever the image size;
  * a tile is padded on the bottom and right to a multiple of the model's `block_size` by
    repeating its last row and column; the padding shapes the auxiliary scales but only
    the tile's own pixels are coded at full resolution;
  * grayscale tiles enter the network as R = G = B, and only the first channel is coded;
  * a tile the model codes worse than PNG does (screenshots, drawings, flat synthetic
    content: far from the photos the models learn from) is stored as PNG instead, so no
    tile costs much more than PNG would.
Section "tiles" holds, per tile, a mode chunk and then `num_streams` chunks: the model's
streams coarse to fine, or the PNG followed by empty chunks (container.pack_chunks). The
mode chunk is MODEL (the model's distributions as they are), ADAPTIVE followed by one byte
of the mixture coder's online adaptation flags (tfcomp.ops.MIXTURE_ADAPT_*: the coder
corrects the distributions to the tile as it codes it; see ops/lib/mixture_coder.h), or PNG.

Efforts (`tfcomp compress --effort N`) choose how much work the encoder and decoder do, as
JPEG XL's do: 1 codes through the model alone; 2, the default, adapts online (bias, scale
and calibration), a few percent fewer bits for a little more time.

A served model (lossless_serving.Serving) codes an RGB image of one tile through the model
alone, at the default effort: its strings are that tile's streams, which `pack_served` wraps
into a file and `unpack_served` takes back out.
"""
import functools
import struct

import imagecodecs
import numpy as np

from tfcomp import base_layer, codecs, container, rc_streams
from tfcomp.codecs import learned

TILE = 1024
SECTION = "tiles"
MODEL, ADAPTIVE, PNG = b"M", b"A", b"P"  # a tile's mode chunk (ADAPTIVE + a flags byte)
# The mixture coder's adaptation flags of each effort (tfcomp.ops.MIXTURE_ADAPT_*, which
# tests check against these: this module must not import TensorFlow).
EFFORT_ADAPTATION = {1: 0, 2: 7}
DEFAULT_EFFORT = 2
# A served model (lossless_serving.Serving) codes as `tfcomp compress` does by default.
SERVED_ADAPTATION = EFFORT_ADAPTATION[DEFAULT_EFFORT]
ADAPTATION_PARTS = ((1, "bias"), (2, "scale"), (4, "calibration"))
ADAPTATION_FLAGS = range(1, 8)  # the flags an ADAPTIVE tile may carry


def adaptation_name(flags):
  """'bias+scale+calibration' for flags 7, ...; 'none' for 0."""
  return "+".join(name for bit, name in ADAPTATION_PARTS if flags & bit) or "none"


def model_mode(adaptation):
  """The mode chunk of a model tile coded with the adaptation flags `adaptation`."""
  return ADAPTIVE + bytes([adaptation]) if adaptation else MODEL


def coding_kwargs(adaptation):
  """The keyword arguments of a model's compress / decompress for `adaptation`: none
  without it, so that models whose coder does not adapt are called as before."""
  return {"adaptation": adaptation} if adaptation else {}
PNG_LEVEL = 9
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def tile_boxes(height, width, tile=None):
  """(top, left, height, width) of each tile (TILE x TILE unless `tile`) in raster order."""
  tile = tile or TILE
  return [(y, x, min(tile, height - y), min(tile, width - x))
          for y in range(0, height, tile) for x in range(0, width, tile)]


def png_tile(tile):
  """PNG bytes of an 8-bit tile [h, w, 1 or 3]."""
  return imagecodecs.png_encode(tile[..., 0] if tile.shape[2] == 1 else tile, level=PNG_LEVEL)


def png_untile(data, height, width, channels):
  """The tile [height, width, channels] stored by `png_tile`; FormatError unless the PNG
  declares exactly that geometry (checked before anything is allocated) and decodes."""
  if len(data) < 33 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
    raise container.FormatError("PNG tile lacks its PNG signature and header")
  w, h, depth, colour = struct.unpack_from(">IIBB", data, 16)
  if (h, w, depth, colour) != (height, width, 8, 0 if channels == 1 else 2):
    raise container.FormatError(f"PNG tile declares {w}x{h}, {depth}-bit, colour type "
                                f"{colour}; the tile is {width}x{height} with {channels} "
                                "8-bit channels")
  try:
    tile = imagecodecs.png_decode(data)
  except Exception as e:  # imagecodecs raises codec-specific error classes
    raise container.FormatError(f"PNG tile does not decode: {e}") from None
  tile = tile.reshape(tile.shape[:2] + (-1,))
  if tile.shape != (height, width, channels) or tile.dtype != np.uint8:
    raise container.FormatError(f"PNG tile decoded to {tile.dtype} {tile.shape}")
  return tile


class LosslessModelCodec(learned.ModelCodec):
  """A zoo codec around a learned lossless model stored as a models.save .npz.

  Args:
    name: the model's zoo name, written into files.
    weights_path: the .npz of models.save.
    fallback: store a tile as PNG where that is smaller (off: every tile through the
      model, to measure the model alone).
  """

  lossless = True
  unsupported_hint = "; use --model fixedpred-v1 for alpha channels and 16-bit images"

  def __init__(self, name, weights_path, fallback=True):
    super().__init__(name, weights_path)
    self.fallback = bool(fallback)
    # Models whose coder adapts (tfcomp.ops.mixture_encode's `adaptation`) have efforts.
    adaptive = getattr(self.model, "adaptive_coding", False)
    self.efforts = tuple(sorted(EFFORT_ADAPTATION)) if adaptive else ()
    self.default_effort = DEFAULT_EFFORT if adaptive else None

  def _tiles(self, image):
    """(height, width, tile, padded tile) of each tile of `image`, in raster order."""
    for top, left, h, w in tile_boxes(*image.shape[:2]):
      tile = image[top:top + h, left:left + w]
      yield h, w, tile, self.padded(tile)

  def compress(self, image, effort=None):
    """Sections of `image`; `effort` (one of self.efforts, default DEFAULT_EFFORT for
    models that have efforts) picks the coder's adaptation."""
    adaptation = self.adaptation_of(effort)
    mode = model_mode(adaptation)
    chunks = []
    for h, w, tile, padded in self._tiles(image):
      streams = [s.numpy() for s in self.model.compress(padded, h, w, image.shape[2],
                                                        **coding_kwargs(adaptation))]
      png = png_tile(tile) if self.fallback else None
      if png is not None and len(png) < sum(len(s) for s in streams):
        chunks += [PNG, png] + [b""] * (len(streams) - 1)
      else:
        chunks += [mode] + list(streams)
    return {SECTION: container.pack_chunks(chunks)}

  def adaptation_of(self, effort):
    """The coder's adaptation flags at `effort` (None: the default); ValueError for an
    effort this model does not have (codecs.check_effort)."""
    codecs.check_effort(self, effort)
    if not self.efforts:
      return 0
    return EFFORT_ADAPTATION[self.default_effort if effort is None else effort]

  @functools.cached_property
  def serving(self):
    """The model's SavedModel functions (lossless_serving.Serving), which tools/export.py
    saves; made on first use, as only the export needs them."""
    from tfcomp.codecs import lossless_serving  # pylint: disable=import-outside-toplevel
    # The default effort's adaptation (SERVED_ADAPTATION), or none for models without efforts.
    return lossless_serving.Serving(self.model, TILE, coding_kwargs(self.adaptation_of(None)))

  def _tile_chunks(self, sections, geometry):
    """[(mode, streams)] of each tile of a file's sections, in raster order."""
    if SECTION not in sections:
      raise container.FormatError(f"expected section {SECTION!r}, found {sorted(sections)}")
    per_tile = 1 + self.model.num_streams
    count = len(tile_boxes(geometry.height, geometry.width))
    chunks = container.unpack_chunks(sections[SECTION], per_tile * count, SECTION)
    return [(chunks[i], chunks[i + 1:i + per_tile]) for i in range(0, len(chunks), per_tile)]

  def decompress(self, sections, geometry):
    if set(sections) != {SECTION}:
      raise container.FormatError(f"expected section {SECTION!r}, found {sorted(sections)}")
    self.check_geometry(geometry)
    tiles = self._tile_chunks(sections, geometry)
    image = np.empty((geometry.height, geometry.width, geometry.channels), np.uint8)
    block = self.model.block_size
    boxes = tile_boxes(geometry.height, geometry.width)
    for i, ((top, left, h, w), (mode, streams)) in enumerate(zip(boxes, tiles)):
      if mode == PNG:
        if any(streams[1:]):
          raise container.FormatError(f"PNG tile {i} carries model streams")
        image[top:top + h, left:left + w] = png_untile(streams[0], h, w, geometry.channels)
      else:
        adaptation = mode_adaptation(mode, i)
        if adaptation and not self.efforts:
          raise container.FormatError(f"tile {i} is coded with adaptation, which model "
                                      f"{self.name}'s coder does not have")
        levels = self.model.decompress(streams, learned.padded_size(h, w, block), h, w,
                                       geometry.channels, **coding_kwargs(adaptation))
        image[top:top + h, left:left + w] = np.asarray(levels)[0]
    return image

  def estimate(self, image):
    """Estimated bits of `image` under the exact tiling of `compress`: the model's
    cross-entropy per tile, or the PNG's real size where that is smaller (as `compress`
    decides with real sizes, which the estimate tracks closely)."""
    self.check_image(image)
    bits = 0.0
    for h, w, tile, padded in self._tiles(image):
      tile_bits = float(self.model(padded, valid=(h, w, image.shape[2]))["bits"][0])
      if self.fallback:
        tile_bits = min(tile_bits, 8.0 * len(png_tile(tile)))
      bits += tile_bits
    return {"bits": bits}


def mode_adaptation(mode, index):
  """The adaptation flags of a model tile's mode chunk (0 for MODEL); FormatError for a
  chunk that is no model tile's mode."""
  mode = bytes(mode)
  if mode == MODEL:
    return 0
  if len(mode) == 2 and mode[:1] == ADAPTIVE and mode[1] in ADAPTATION_FLAGS:
    return mode[1]
  raise container.FormatError(f"tile {index} has unknown mode {mode!r}")


def split_tiles(sections, geometry):
  """[(mode, streams)] of each tile of a learned lossless file's sections, in raster
  order, from the file alone (its chunks frame themselves: each tile holds a mode chunk and
  as many stream chunks as its model has), so that it needs neither the model nor
  TensorFlow."""
  if SECTION not in sections:
    raise container.FormatError(f"expected section {SECTION!r}, found {sorted(sections)}")
  chunks = container.split_chunks(sections[SECTION], SECTION)
  count = len(tile_boxes(geometry.height, geometry.width))
  if not chunks or len(chunks) % count:
    raise container.FormatError(f"{SECTION} holds {len(chunks)} chunks, not a whole number "
                                f"for each of its {count} tiles")
  per_tile = len(chunks) // count
  return [(bytes(chunks[i]), [bytes(c) for c in chunks[i + 1:i + per_tile]])
          for i in range(0, len(chunks), per_tile)]


def tile_modes(sections, geometry):
  """The mode chunk of each tile (see split_tiles)."""
  return [mode for mode, _ in split_tiles(sections, geometry)]


def _describe_rc_streams(model_tiles):
  """RC's lines: the base layers' QPs and the bits of base and residual."""
  qps = sorted({base_layer.qp_of(streams[0]) for streams in model_tiles})
  base = sum(len(streams[0]) for streams in model_tiles)
  residual = sum(len(streams[1]) for streams in model_tiles)
  share = 100 * base / max(1, base + residual)
  lines = [f"base layer: HEVC intra, QP {', '.join(map(str, qps))}: {base} bytes "
           f"({share:.1f}%); residual: {residual} bytes"]
  taus = [rc_streams.unpack_residual(streams[1])[0] for streams in model_tiles]
  fitted = [k for k in taus if np.any(k)]
  if fitted:
    lines.append(f"scale factors tau fitted on {len(fitted)} of {len(taus)} tiles"
                 + (f": {rc_streams.describe_tau(fitted[0])} (R G B log-scale)"
                    if len(taus) == 1 else ""))
  return lines


# Families whose streams `tfcomp info` describes further (from the file alone).
_STREAM_DESCRIPTIONS = {"rc": _describe_rc_streams}


def describe_tiles(sections, geometry, family=None):
  """`tfcomp info`'s lines about a learned lossless file's tiles (see split_tiles): how
  many are PNG, and which the coder adapted to, with what (the effort they were coded at);
  for a `family` whose streams say more (RC: the base layer's QP), that too."""
  tiles = split_tiles(sections, geometry)
  modes = [mode for mode, _ in tiles]
  lines = [f"tiles: {len(modes)} ({modes.count(PNG)} stored as PNG)"]
  adapted = {}
  for i, mode in enumerate(modes):
    if mode != PNG:
      flags = mode_adaptation(mode, i)
      adapted[flags] = adapted.get(flags, 0) + 1
  for flags, count in sorted(adapted.items()):
    efforts = [e for e, a in EFFORT_ADAPTATION.items() if a == flags]
    what = (f"online adaptation {adaptation_name(flags)}" if flags else
            "the model's distributions as they are")
    lines.append(f"  {count} coded with {what} (effort {efforts[0] if efforts else '?'})")
  model_tiles = [streams for mode, streams in tiles if mode != PNG]
  if family in _STREAM_DESCRIPTIONS and model_tiles:
    lines += _STREAM_DESCRIPTIONS[family](model_tiles)
  return lines


def pack_served(model, weights_hash, strings, image, adaptation=SERVED_ADAPTATION):
  """The bytes of the .tfc file of `image` whose one tile is the model tile of `strings`.

  For clients of a served model (lossless_serving.Serving): `strings` are what its
  `compress` returned for `image` (uint8 [h, w, 3], sides at most TILE), `model` and
  `weights_hash` name the model exported (`tfcomp models`; Codec.weights_hash), and
  `adaptation` is the one it codes with (SERVED_ADAPTATION, the default effort's, for the
  zoo's models). The file carries the CRC-32 of `image`, which the file's decoder checks.
  """
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
    raise ValueError(f"served models code uint8 [h, w, 3] images, got {image.dtype} "
                     f"{image.shape}")
  if max(image.shape[:2]) > TILE:
    raise ValueError(f"a {image.shape[0]}x{image.shape[1]} image is more than one tile "
                     f"({TILE}x{TILE}), which a served model never codes")
  sections = {SECTION: container.pack_chunks([model_mode(adaptation), *strings]),
              codecs.PIXEL_CRC_SECTION: codecs.pixel_crc(image)}
  return container.write(container.Container(model, weights_hash, codecs.geometry_of(image),
                                             sections))


def unpack_served(data, adaptation=SERVED_ADAPTATION):
  """(container, strings, shape int32 [2]) of a .tfc file of one RGB model tile coded with
  `adaptation`: what a served model's `decompress` takes (a file of `pack_served`, or of
  the codec at the default effort for such an image); FormatError for any other file,
  which only the file codec decodes."""
  parsed = container.read(data)
  g = parsed.geometry
  if (g.channels, g.bit_depth) != (3, 8) or max(g.height, g.width) > TILE:
    raise container.FormatError(
        f"served models decode 8-bit RGB images of one tile ({TILE}x{TILE}); this file "
        f"holds a {g.height}x{g.width} {g.bit_depth}-bit "
        f"{codecs.CHANNEL_KINDS[g.channels]} image")
  modes = tile_modes(parsed.sections, g)
  if modes == [PNG]:
    raise container.FormatError("the file's tile is stored as PNG, not through the model; "
                                "decode it with the file codec")
  if modes != [model_mode(adaptation)]:
    raise container.FormatError(
        f"the file's tile is coded with adaptation {adaptation_name(mode_adaptation(modes[0], 0))}"
        f", the served model's with {adaptation_name(adaptation)}; decode it with the file "
        "codec")
  strings = container.split_chunks(parsed.sections[SECTION], SECTION)[1:]
  return parsed, strings, np.array([g.height, g.width], np.int32)
