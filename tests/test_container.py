"""tfcomp.container: round trip and strict validation of every field."""
import dataclasses
import struct
import zlib

import pytest

from tfcomp import container

GEOMETRY = container.Geometry(height=37, width=23, channels=3, bit_depth=8)


def make(**changes):
  fields = dict(model="fixedpred-v1", weights_hash=bytes(range(16)), geometry=GEOMETRY,
                sections={"a": b"hello", "b": b"", "c": bytes(range(256)) * 3})
  fields.update(changes)
  return container.Container(**fields)


def test_round_trip():
  c = make()
  assert container.read(container.write(c)) == c


def test_every_truncation_and_extension_is_rejected():
  data = container.write(make())
  for n in range(len(data)):
    with pytest.raises(container.FormatError):
      container.read(data[:n])
  with pytest.raises(container.FormatError, match="unexpected bytes"):
    container.read(data + b"\x00")


def test_every_single_bit_flip_is_rejected():
  data = container.write(make())
  for i in range(len(data)):
    for bit in (0, 7):
      damaged = bytearray(data)
      damaged[i] ^= 1 << bit
      with pytest.raises(container.FormatError):
        container.read(bytes(damaged))


def _with_header(c, patch):
  """Serializes `c`, lets `patch` edit the header bytes, and fixes the header checksum."""
  data = bytearray(container.write(c))
  header_size = struct.unpack_from("<I", data, 10)[0]
  header = bytearray(data[14:14 + header_size])
  patch(header)
  head = bytes(data[:14]) + bytes(header)
  return head + struct.pack("<I", zlib.crc32(head)) + bytes(data[18 + header_size:])


@pytest.mark.parametrize("offset,fmt,value,message", [
    (0, "<I", 0, "height 0"),                       # height
    (4, "<I", container.MAX_SIDE + 1, "width"),     # width
    (8, "<B", 5, "channel count 5"),
    (9, "<B", 12, "bit depth 12"),
    (10, "<H", container.MAX_SECTIONS + 1, "sections exceed"),
])
def test_geometry_and_counts_are_validated(offset, fmt, value, message):
  base = 1 + len("fixedpred-v1") + 16  # model name and weights hash come first

  def patch(header):
    struct.pack_into(fmt, header, base + offset, value)

  with pytest.raises(container.FormatError, match=message):
    container.read(_with_header(make(), patch))


def test_pixel_cap_guards_against_memory_bombs():
  with pytest.raises(container.FormatError, match="exceeds the cap"):
    container.Geometry(container.MAX_SIDE, container.MAX_SIDE, 3).validate()


def test_section_sizes_must_match_the_file():
  def patch(header):
    # First section size field: after name length byte + "a".
    pos = 1 + len("fixedpred-v1") + 16 + 12 + 2
    struct.pack_into("<Q", header, pos, 1 << 40)

  with pytest.raises(container.FormatError, match="truncated"):
    container.read(_with_header(make(), patch))


def test_clear_messages():
  with pytest.raises(container.FormatError, match="bad magic"):
    container.read(b"\x89PNG\r\n\x1a\n" + bytes(100))
  with pytest.raises(container.FormatError, match="version 7"):
    data = bytearray(container.write(make()))
    struct.pack_into("<H", data, 8, 7)
    container.read(bytes(data))
  with pytest.raises(container.FormatError, match="truncated"):
    container.read(container.write(make())[:5])
  with pytest.raises(container.FormatError, match="repeat"):
    container.read(_with_header(make(sections={"ab": b"1", "ac": b"2"}),
                                lambda h: h.__setitem__(slice(-13, -12), b"b")))  # "ac" -> "ab"


def test_writer_validates_too():
  with pytest.raises(container.FormatError, match="weights hash"):
    container.write(make(weights_hash=b"short"))
  with pytest.raises(container.FormatError, match="model name"):
    container.write(make(model=""))
  with pytest.raises(container.FormatError):
    container.write(make(geometry=dataclasses.replace(GEOMETRY, channels=0)))
