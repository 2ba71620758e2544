"""RC's HEVC base layer: integer colour transform, exact decoding, validation, the cache."""
import os
import subprocess
import sys

import numpy as np
import pytest

from tfcomp import base_layer, container, testing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_colour_transform_is_integer_and_close_to_inverse():
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
  ycc = base_layer.forward_ycbcr(rgb)
  assert ycc.dtype == np.uint8
  back = base_layer.inverse_ycbcr(ycc).astype(int)
  # 8-bit planes lose a little; a lossy base layer needs only a close, fixed inverse.
  assert np.abs(back - rgb).max() <= 3
  grey = np.full((2, 2, 3), 77, np.uint8)
  np.testing.assert_array_equal(base_layer.forward_ycbcr(grey)[..., 1:], 128)
  np.testing.assert_array_equal(base_layer.inverse_ycbcr(base_layer.forward_ycbcr(grey)), grey)


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (7, 513), (37, 23), (65, 64)])
def test_odd_sizes_decode_to_their_geometry(shape):
  image = testing.smooth_image(shape[0], shape[1], 3, seed=sum(shape))
  data, base = base_layer.reconstruct(image, 12)
  assert base.shape == image.shape and base.dtype == np.uint8
  assert base_layer.qp_of(data) == 12


def test_quantizer_sets_the_rate_and_the_error():
  image = testing.smooth_image(96, 128, 3, seed=1)
  sizes, errors = [], []
  for qp in (8, 20, 32):
    data, base = base_layer.reconstruct(image, qp)
    sizes.append(len(data))
    errors.append(np.mean((base.astype(float) - image) ** 2))
  assert sizes[0] > sizes[1] > sizes[2]
  assert errors[0] < errors[1] < errors[2]


def test_invalid_arguments_name_the_value():
  image = np.zeros((4, 4, 3), np.uint8)
  for qp in (-1, 52, 13.0):
    with pytest.raises(ValueError, match="QP must be"):
      base_layer.encode(image, qp)
  with pytest.raises(ValueError, match="uint8"):
    base_layer.encode(np.zeros((4, 4), np.uint8), 13)


@pytest.mark.parametrize("damage", ["empty", "qp", "truncate", "garbage", "geometry"])
def test_damaged_base_layers_raise_format_errors(damage):
  image = testing.smooth_image(40, 48, 3, seed=3)
  data = base_layer.encode(image, 14)
  height, width = 40, 48
  if damage == "empty":
    data = b""
  elif damage == "qp":
    data = bytes([99]) + data[1:]
  elif damage == "truncate":
    data = data[:len(data) // 2]
  elif damage == "garbage":
    data = data[:1] + np.random.default_rng(1).bytes(len(data) - 1)
  else:
    width = 50
  with pytest.raises(container.FormatError):
    base_layer.decode(data, height, width)


def test_reconstruction_is_the_same_in_fresh_processes_under_other_settings(tmp_path):
  """Both sides decode the base with libde265: a fresh process, one thread or another
  instruction set must give the reconstruction the encoder measured."""
  image = testing.smooth_image(72, 88, 3, seed=5)
  data, base = base_layer.reconstruct(image, 13)
  path = tmp_path / "base.bin"
  path.write_bytes(data)
  script = ("import sys, hashlib; from tfcomp import base_layer; "
            "d = open(sys.argv[1], 'rb').read(); "
            "print(hashlib.sha256(base_layer.decode(d, 72, 88).tobytes()).hexdigest())")
  expected = __import__("hashlib").sha256(base.tobytes()).hexdigest()
  for env in ({}, {"OMP_NUM_THREADS": "1", "LIBDE265_NUM_THREADS": "1"},
              {"ONEDNN_MAX_CPU_ISA": "SSE41"}):
    out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                         text=True, check=True, cwd=ROOT, env={**os.environ, **env})
    assert out.stdout.strip() == expected, env


def test_cache_codes_once_and_keys_by_content(tmp_path):
  from tfcomp import io as tfcomp_io  # pylint: disable=import-outside-toplevel
  files = []
  for i in range(2):
    path = str(tmp_path / f"im{i}.png")
    tfcomp_io.write_png(path, testing.smooth_image(32, 40, 3, seed=i))
    files.append(path)
  cache = str(tmp_path / "cache")
  logged = []
  pairs = base_layer.cached_reconstructions(files, (12, 14), cache, log=logged.append)
  assert logged == [f"coded 4 base layers into {cache}"]
  for path in files:
    assert len(pairs[path]) == 2
    _, expected = base_layer.reconstruct(tfcomp_io.read_image(path), 14)
    np.testing.assert_array_equal(tfcomp_io.read_image(pairs[path][1]), expected)
  again = base_layer.cached_reconstructions(files, (12, 14), cache, log=logged.append)
  assert again == pairs and len(logged) == 1
  tfcomp_io.write_png(files[0], testing.smooth_image(32, 40, 3, seed=9))
  changed = base_layer.cached_reconstructions(files, (12, 14), cache)
  assert changed[files[0]] != pairs[files[0]] and changed[files[1]] == pairs[files[1]]
