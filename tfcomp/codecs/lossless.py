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
import numpy as np

from tfcomp import container
from tfcomp.codecs import learned

TILE = 1024
SECTION = "tiles"


def tile_boxes(height, width, tile=TILE):
  """(top, left, height, width) of each tile in raster order."""
  return [(y, x, min(tile, height - y), min(tile, width - x))
          for y in range(0, height, tile) for x in range(0, width, tile)]


class LosslessModelCodec(learned.ModelCodec):
  """A zoo codec around a learned lossless model stored as a models.save .npz."""

  lossless = True
  unsupported_hint = "; use --model fixedpred-v1 for alpha channels and 16-bit images"

  def _tiles(self, image):
    """(height, width, padded tile) of each tile of `image`, in raster order."""
    for top, left, h, w in tile_boxes(*image.shape[:2]):
      yield h, w, self.padded(image[top:top + h, left:left + w])

  def compress(self, image):
    chunks = []
    for h, w, tile in self._tiles(image):
      chunks += self.model.compress(tile, h, w, image.shape[2])
    return {SECTION: container.pack_chunks(chunks)}

  def decompress(self, sections, geometry):
    if set(sections) != {SECTION}:
      raise container.FormatError(f"expected section {SECTION!r}, found {sorted(sections)}")
    self.check_geometry(geometry)
    boxes = tile_boxes(geometry.height, geometry.width)
    per_tile = self.model.num_streams
    chunks = container.unpack_chunks(sections[SECTION], per_tile * len(boxes), SECTION)
    image = np.empty((geometry.height, geometry.width, geometry.channels), np.uint8)
    block = self.model.block_size
    for i, (top, left, h, w) in enumerate(boxes):
      levels = self.model.decompress(chunks[i * per_tile:(i + 1) * per_tile],
                                     learned.padded_size(h, w, block), h, w,
                                     geometry.channels)
      image[top:top + h, left:left + w] = np.asarray(levels)[0]
    return image

  def estimate(self, image):
    """Estimated (cross-entropy) bits of `image` under the exact tiling of `compress`."""
    self.check_image(image)
    bits = 0.0
    for h, w, tile in self._tiles(image):
      bits += float(self.model(tile, valid=(h, w, image.shape[2]))["bits"][0])
    return {"bits": bits}
