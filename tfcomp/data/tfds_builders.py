"""TFDS builders for the standard image compression evaluation sets.

Each builder yields {"image": uint8 [H, W, 3], "filename": str}, stored losslessly (PNG).
It builds from a local manual directory when one holds the images (as on machines without
internet: pass `manual_dir`, e.g. ../shared/datasets/kodak), and downloads otherwise.
Names carry a `tfcomp_` prefix, apart from TFDS's own `clic` and `div2k`.
"""
import os

import numpy as np
import tensorflow_datasets as tfds

from tfcomp import io as tfcomp_io


def image_files(directory):
  """Image files under `directory` (recursively), sorted by path."""
  found = []
  for root, _, names in os.walk(directory):
    found += [os.path.join(root, n) for n in names
              if n.lower().endswith(tfcomp_io.IMAGE_EXTENSIONS)]
  return sorted(found)


class _ImageSetBuilder(tfds.core.GeneratorBasedBuilder):
  """A folder of images as a single evaluation split."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  SPLIT = "validation"
  URLS = ()          # files to download when there is no manual directory
  ARCHIVE = False    # whether URLS are archives to extract
  CITATION = ""
  HOMEPAGE = ""
  DESCRIPTION = ""

  def _info(self):
    return self.dataset_info_from_configs(
        description=self.DESCRIPTION,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
            "filename": tfds.features.Text(),
        }),
        homepage=self.HOMEPAGE,
        citation=self.CITATION,
    )

  def _split_generators(self, dl_manager):
    try:
      manual = str(dl_manager.manual_dir)  # TFDS asserts that the directory exists
    except AssertionError:
      manual = None
    if manual and image_files(manual):
      directory = manual
    elif not self.URLS:
      raise FileNotFoundError(
          f"{self.name} is built from a manual directory only: {self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    elif self.ARCHIVE:
      directory = os.path.commonpath([str(p) for p in dl_manager.download_and_extract(
          list(self.URLS))])
    else:
      directory = os.path.dirname(str(dl_manager.download(list(self.URLS))[0]))
    return {self.SPLIT: self._generate_examples(directory)}

  def _generate_examples(self, directory):
    for path in image_files(directory):
      image = tfcomp_io.read_image(path)
      if image.dtype != np.uint8 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"{path}: expected an 8-bit gray, RGB or RGBA image")
      if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
      yield os.path.relpath(path, directory), {"image": image[..., :3],
                                               "filename": os.path.basename(path)}


class TfcompKodak(_ImageSetBuilder):
  """Kodak Lossless True Color Image Suite: 24 images of 768x512 (or 512x768)."""
  MANUAL_DOWNLOAD_INSTRUCTIONS = "a directory with kodim01.png ... kodim24.png"
  URLS = tuple(f"http://r0k.us/graphics/kodak/kodak/kodim{i:02d}.png" for i in range(1, 25))
  SPLIT = "test"
  HOMEPAGE = "http://r0k.us/graphics/kodak/"
  DESCRIPTION = "Kodak Lossless True Color Image Suite (PhotoCD PCD0992)."


class TfcompClic2020Mobile(_ImageSetBuilder):
  """CLIC 2020 validation set, mobile track."""
  MANUAL_DOWNLOAD_INSTRUCTIONS = "the extracted mobile_valid_2020.zip"
  URLS = ("https://data.vision.ee.ethz.ch/cvl/clic/mobile_valid_2020.zip",)
  ARCHIVE = True
  HOMEPAGE = "http://compression.cc/"
  DESCRIPTION = "Challenge on Learned Image Compression 2020, mobile validation images."


class TfcompClic2020Professional(_ImageSetBuilder):
  """CLIC 2020 validation set, professional track."""
  MANUAL_DOWNLOAD_INSTRUCTIONS = "the extracted professional_valid_2020.zip"
  URLS = ("https://data.vision.ee.ethz.ch/cvl/clic/professional_valid_2020.zip",)
  ARCHIVE = True
  HOMEPAGE = "http://compression.cc/"
  DESCRIPTION = "Challenge on Learned Image Compression 2020, professional validation images."


class TfcompDiv2kValid(_ImageSetBuilder):
  """DIV2K validation set, high resolution (100 images)."""
  MANUAL_DOWNLOAD_INSTRUCTIONS = "the extracted DIV2K_valid_HR.zip"
  URLS = ("http://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_valid_HR.zip",)
  ARCHIVE = True
  HOMEPAGE = "https://data.vision.ee.ethz.ch/cvl/DIV2K/"
  DESCRIPTION = "DIV2K validation images, high resolution."


class TfcompOpenImagesVal500(_ImageSetBuilder):
  """The 500 Open Images validation images used by L3C, SReC and RC."""
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "a directory with the 500 Open Images validation images that L3C's preparation "
      "script selects and downscales (see the L3C repository); they cannot be downloaded "
      "directly")
  HOMEPAGE = "https://storage.googleapis.com/openimages/web/index.html"
  DESCRIPTION = "Open Images validation subset of 500 images, as prepared for L3C."
