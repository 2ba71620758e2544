"""Learned lossless codecs (L3C, SReC, ...): any model of the lossless contract, in tiles.

The model codes one padded tile at a time:

    model.compress(x [1, Hp, Wp, 3] uint8, height, width, channels) -> [streams]
    model.decompress(streams, (Hp, Wp), height, width, channels) -> int32 [1, h, w, channels]

Tiling and padding rules (fixed by the format, so decoders agree):
  * the image is cut into TILE x TILE tiles in raster order (edge tiles are smaller), each
    coded independently, so memory is bounded by a tile whatever the image size;
  * a tile is padded on the bottom and right to a multiple of the model's `block_size` by
    repeating its last row and column; the padding shapes the auxiliary scales but only
    the tile's own pixels are coded at full resolution;
  * grayscale tiles enter the network as R = G = B, and only the first channel is coded.
Section "tiles" holds every tile's streams (container.pack_chunks), coarse to fine.
"""
import hashlib

import numpy as np

from tfcomp import codecs, container, models

TILE = 1024
SECTION = "tiles"


def tile_boxes(height, width, tile=TILE):
  """(top, left, height, width) of each tile in raster order."""
  return [(y, x, min(tile, height - y), min(tile, width - x))
          for y in range(0, height, tile) for x in range(0, width, tile)]


def padded_size(height, width, block):
  return -(-height // block) * block, -(-width // block) * block


class LosslessModelCodec(codecs.Codec):
  """A zoo codec around a learned lossless model stored as a models.save .npz."""

  lossless = True

  def __init__(self, name, weights_path):
    models.check_deterministic_backend()
    self.name = name
    with open(weights_path, "rb") as f:
      raw = f.read()
    self._hash = hashlib.sha256(raw).digest()[:16]
    self.family, self.model = models.from_bytes(raw)

  @property
  def weights_hash(self):
    return self._hash

  def check_image(self, image):
    codecs.require_gray_or_rgb8(
        self.name, image, "; use --model fixedpred-v1 for alpha channels and 16-bit images")

  def _padded_tile(self, tile):
    block = self.model.block_size
    h, w = tile.shape[:2]
    hp, wp = padded_size(h, w, block)
    tile = np.pad(tile, ((0, hp - h), (0, wp - w), (0, 0)), mode="edge")
    if tile.shape[2] == 1:
      tile = np.repeat(tile, 3, axis=2)
    return tile[None]

  def compress(self, image):
    chunks = []
    channels = image.shape[2]
    for top, left, h, w in tile_boxes(*image.shape[:2]):
      tile = self._padded_tile(image[top:top + h, left:left + w])
      chunks += self.model.compress(tile, h, w, channels)
    return {SECTION: container.pack_chunks(chunks)}

  def decompress(self, sections, geometry):
    if set(sections) != {SECTION}:
      raise container.FormatError(f"expected section {SECTION!r}, found {sorted(sections)}")
    if geometry.bit_depth != 8 or geometry.channels not in (1, 3):
      raise container.FormatError(f"{self.name} files hold 8-bit gray or RGB images, this "
                                  f"header says {geometry.bit_depth}-bit with "
                                  f"{geometry.channels} channels")
    boxes = tile_boxes(geometry.height, geometry.width)
    per_tile = self.model.num_streams
    chunks = container.unpack_chunks(sections[SECTION], per_tile * len(boxes), SECTION)
    image = np.empty((geometry.height, geometry.width, geometry.channels), np.uint8)
    block = self.model.block_size
    for i, (top, left, h, w) in enumerate(boxes):
      levels = self.model.decompress(chunks[i * per_tile:(i + 1) * per_tile],
                                     padded_size(h, w, block), h, w, geometry.channels)
      image[top:top + h, left:left + w] = np.asarray(levels)[0]
    return image

  def estimate(self, image):
    """Estimated (cross-entropy) bits of `image` under the exact tiling of `compress`."""
    self.check_image(image)
    bits = 0.0
    channels = image.shape[2]
    for top, left, h, w in tile_boxes(*image.shape[:2]):
      tile = self._padded_tile(image[top:top + h, left:left + w])
      bits += float(self.model(tile, valid=(h, w, channels))["bits"][0])
    return {"bits": bits}
