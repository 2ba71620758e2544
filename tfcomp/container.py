"""The tfcomp file format: one versioned container for every codec.

Layout (all integers little endian):

    magic        8 bytes  b"\\x89TFCOMP\\n" (the high byte and newline catch text-mode damage)
    version      u16      FORMAT_VERSION
    header_size  u32      size of the header that follows
    header       header_size bytes:
        model        u8 length + UTF-8 name of the zoo model that wrote the file
        weights_hash 16 bytes, identifies the exact weights and tables of that model
        height, width            u32, u32
        channels, bit_depth      u8, u8   (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA; 8 or 16)
        num_sections             u16
        per section: u8 length + ASCII name, u64 size, u32 CRC-32 of its bytes
    header_crc   u32      CRC-32 of everything before it
    payload      the sections' bytes, in order, and nothing after them

`read` checks every field and size against caps before it allocates anything, so neither
a damaged file nor a hostile one can make it read out of bounds or allocate without limit.
"""
import dataclasses
import hashlib
import struct
import zlib

MAGIC = b"\x89TFCOMP\n"
FORMAT_VERSION = 1

MAX_SIDE = 1 << 16              # pixels per side
MAX_PIXELS = 1 << 28            # 268 megapixels
MAX_SECTIONS = 64
MAX_NAME = 64
MAX_HEADER = 1 << 16
WEIGHTS_HASH_SIZE = 16
CHANNELS = (1, 2, 3, 4)
BIT_DEPTHS = (8, 16)

_FIXED = struct.Struct("<8sHI")


class FormatError(ValueError):
  """A file is not a valid tfcomp container; the message says what is wrong."""


@dataclasses.dataclass(frozen=True)
class Geometry:
  """Shape and sample format of the coded image."""
  height: int
  width: int
  channels: int
  bit_depth: int = 8

  def validate(self):
    for name in ("height", "width"):
      value = getattr(self, name)
      if not 1 <= value <= MAX_SIDE:
        raise FormatError(f"image {name} {value} is outside [1, {MAX_SIDE}]")
    if self.height * self.width > MAX_PIXELS:
      raise FormatError(f"image of {self.height}x{self.width} pixels exceeds the cap of "
                        f"{MAX_PIXELS} pixels")
    if self.channels not in CHANNELS:
      raise FormatError(f"channel count {self.channels} is not one of {CHANNELS}")
    if self.bit_depth not in BIT_DEPTHS:
      raise FormatError(f"bit depth {self.bit_depth} is not one of {BIT_DEPTHS}")


@dataclasses.dataclass(frozen=True)
class Container:
  """A decoded container: who wrote it, what image it holds, and its named sections."""
  model: str
  weights_hash: bytes
  geometry: Geometry
  sections: dict  # name -> bytes, in file order


def weights_hash_of(weights):
  """The hash a file records of the weights (the bytes of a model's stored file) that wrote
  it: the start of their SHA-256."""
  return hashlib.sha256(weights).digest()[:WEIGHTS_HASH_SIZE]


def _name(text, what):
  raw = text.encode("utf-8")
  if not 1 <= len(raw) <= MAX_NAME:
    raise FormatError(f"{what} {text!r} must be 1 to {MAX_NAME} bytes")
  return struct.pack("<B", len(raw)) + raw


def write(container):
  """Serializes a `Container` to bytes."""
  geometry = container.geometry
  geometry.validate()
  if len(container.weights_hash) != WEIGHTS_HASH_SIZE:
    raise FormatError(f"weights hash must be {WEIGHTS_HASH_SIZE} bytes, got "
                      f"{len(container.weights_hash)}")
  if len(container.sections) > MAX_SECTIONS:
    raise FormatError(f"{len(container.sections)} sections exceed the cap of {MAX_SECTIONS}")
  header = [_name(container.model, "model name"), container.weights_hash,
            struct.pack("<IIBBH", geometry.height, geometry.width, geometry.channels,
                        geometry.bit_depth, len(container.sections))]
  for name, data in container.sections.items():
    if not name.isascii():
      raise FormatError(f"section name {name!r} must be ASCII")
    header += [_name(name, "section name"), struct.pack("<QI", len(data), zlib.crc32(data))]
  header = b"".join(header)
  head = _FIXED.pack(MAGIC, FORMAT_VERSION, len(header)) + header
  return b"".join([head, struct.pack("<I", zlib.crc32(head))] +
                  [bytes(d) for d in container.sections.values()])


class _Reader:
  """Bounds-checked cursor over the header bytes."""

  def __init__(self, data):
    self.data, self.pos = data, 0

  def take(self, size, what):
    if self.pos + size > len(self.data):
      raise FormatError(f"header ends inside the {what}")
    chunk = self.data[self.pos:self.pos + size]
    self.pos += size
    return chunk

  def unpack(self, fmt, what):
    return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))

  def name(self, what):
    (size,) = self.unpack("<B", what)
    raw = self.take(size, what)
    if not size:
      raise FormatError(f"empty {what}")
    try:
      return raw.decode("utf-8")
    except UnicodeDecodeError:
      raise FormatError(f"{what} is not valid UTF-8") from None


def read(data):
  """Parses and validates container bytes; raises `FormatError` naming the problem."""
  data = memoryview(data).tobytes() if not isinstance(data, bytes) else data
  if len(data) < _FIXED.size:
    if MAGIC.startswith(data[:len(MAGIC)]) and data:
      raise FormatError(f"file is truncated: {len(data)} bytes, shorter than the header")
    raise FormatError("not a tfcomp file (bad magic number)")
  magic, version, header_size = _FIXED.unpack_from(data)
  if magic != MAGIC:
    raise FormatError("not a tfcomp file (bad magic number)")
  if version != FORMAT_VERSION:
    raise FormatError(f"file format version {version} is not supported (this tfcomp reads "
                      f"version {FORMAT_VERSION})")
  if header_size > MAX_HEADER:
    raise FormatError(f"header size {header_size} exceeds the cap of {MAX_HEADER}")
  header_end = _FIXED.size + header_size
  if len(data) < header_end + 4:
    raise FormatError(f"file is truncated: {len(data)} bytes, header needs {header_end + 4}")
  (header_crc,) = struct.unpack_from("<I", data, header_end)
  if zlib.crc32(data[:header_end]) != header_crc:
    raise FormatError("header checksum mismatch: the file is corrupted")

  r = _Reader(data[_FIXED.size:header_end])
  model = r.name("model name")
  weights_hash = r.take(WEIGHTS_HASH_SIZE, "weights hash")
  height, width, channels, bit_depth, num_sections = r.unpack("<IIBBH", "image geometry")
  geometry = Geometry(height, width, channels, bit_depth)
  geometry.validate()
  if num_sections > MAX_SECTIONS:
    raise FormatError(f"{num_sections} sections exceed the cap of {MAX_SECTIONS}")
  table = []
  for _ in range(num_sections):
    name = r.name("section name")
    size, crc = r.unpack("<QI", "section table")
    table.append((name, size, crc))
  if r.pos != len(r.data):
    raise FormatError(f"header has {len(r.data) - r.pos} unexpected trailing bytes")
  if len({name for name, _, _ in table}) != len(table):
    raise FormatError("section names repeat")

  payload_size = len(data) - header_end - 4
  declared = sum(size for _, size, _ in table)
  if declared != payload_size:
    what = "truncated" if declared > payload_size else "followed by unexpected bytes"
    raise FormatError(f"file is {what}: sections declare {declared} bytes, file holds "
                      f"{payload_size}")
  sections, pos = {}, header_end + 4
  for name, size, crc in table:
    chunk = data[pos:pos + size]
    if zlib.crc32(chunk) != crc:
      raise FormatError(f"section {name!r} checksum mismatch: the file is corrupted")
    sections[name] = chunk
    pos += size
  return Container(model, weights_hash, geometry, sections)


def pack_chunks(chunks):
  """One section's bytes holding several byte strings: (u32 length, bytes) each."""
  return b"".join(struct.pack("<I", len(c)) + bytes(c) for c in chunks)


def split_chunks(data, what="section"):
  """All the byte strings of `pack_chunks`, however many; FormatError if the framing is
  wrong."""
  chunks, pos = [], 0
  while pos < len(data):
    if pos + 4 > len(data):
      raise FormatError(f"{what} ends inside the length of chunk {len(chunks)}")
    (size,) = struct.unpack_from("<I", data, pos)
    if pos + 4 + size > len(data):
      raise FormatError(f"{what} chunk {len(chunks)} claims {size} bytes; only "
                        f"{len(data) - pos - 4} remain")
    chunks.append(data[pos + 4:pos + 4 + size])
    pos += 4 + size
  return chunks


def unpack_chunks(data, count, what="section"):
  """The `count` byte strings of `pack_chunks`; FormatError if the framing is wrong."""
  chunks = split_chunks(data, what)
  if len(chunks) != count:
    raise FormatError(f"{what} holds {len(chunks)} chunks, expected {count}")
  return chunks
