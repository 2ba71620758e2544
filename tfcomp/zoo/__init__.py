"""The model zoo: named, versioned codecs with the weights shipped inside the package.

Names begin with their family (`l3c-...`, `hyperprior-...`, ...). A file records the name
and the weights hash of the model that wrote it, so `load(name)` must keep returning the
same weights for a name; new weights get a new name.

`manifest.json` beside the weights holds each model's measured figures; the benchmark
harness writes it (`tools/bench.py --update_manifest`), `tfcomp models` shows it, and
`tfcomp compress --lossy` picks rate points from it. Nothing here imports TensorFlow.
"""
import dataclasses
import functools
import json
import os

from tfcomp import container

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
MANIFEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "manifest.json")


@dataclasses.dataclass(frozen=True)
class ZooEntry:
  name: str
  family: str
  lossless: bool
  description: str
  load: object  # () -> tfcomp.codecs.Codec
  curve: str = ""  # lossy models: rate points of one RD curve share this name
  use: str = ""  # what a user would pick it for, in a few words

  def __post_init__(self):
    if not self.name.startswith(self.family + "-"):
      raise ValueError(f"zoo name {self.name!r} must begin with its family {self.family!r}")


def _fixedpred(name):
  from tfcomp.codecs import fixedpred  # pylint: disable=import-outside-toplevel
  return fixedpred.FixedPredCodec(name, weights_path(name))


def _learned(name):
  from tfcomp import codecs  # pylint: disable=import-outside-toplevel
  return codecs.from_weights(name, weights_path(name))


def _hyperprior(version, quality, lmbda, made):
  name = f"hyperprior-ms-{version}-q{quality}"
  return ZooEntry(name, "hyperprior", False,
                  f"mean-scale hyperprior (Minnen et al. 2018, no context; config small), "
                  f"MSE, lambda={lmbda}, {made}; 8-bit gray, RGB",
                  functools.partial(_learned, name), curve=f"hyperprior-ms-{version}",
                  use=f"lossy for PSNR, rate point {quality} of 4 (what --lossy picks from)")


def _hific(version, regime, rate, made, config="small",
           design="the hyperprior's transforms, CPU-sized"):
  name = f"hific-{config}-{version}-{regime}"
  return ZooEntry(name, "hific", False,
                  f"HiFiC (Mentzer et al. 2020; config {config}-{regime}: {design}), rate + "
                  f"MSE + LPIPS + conditional GAN, {rate}, {made}; 8-bit gray, RGB",
                  functools.partial(_learned, name), curve=f"hific-{config}-{version}",
                  use=f"lossy for perceptual quality (LPIPS), the {regime} rate")


# Each learned lossless family's system and paper, for the zoo's descriptions.
_LOSSLESS_PAPERS = {"srec": ("SReC", "Cao et al. 2020"), "l3c": ("L3C", "Mentzer et al. 2019"),
                    "rc": ("RC", "Mentzer et al. 2020")}


def _lossless(family, version, config, made, use, variant=""):
  name = f"{family}-{config}-{version}"
  system, paper = _LOSSLESS_PAPERS[family]
  return ZooEntry(name, family, True,
                  f"{system} ({paper}; config {config}{variant}, CPU-sized), {made}; "
                  "8-bit gray, RGB", functools.partial(_learned, name), use=use)


def _imgcomp(version, point, h_target, steps, variant=""):
  name = f"imgcomp-{version}-{point}"
  return ZooEntry(name, "imgcomp", False,
                  f"imgcomp (Mentzer et al. 2018; config {point}{variant}, CPU-sized), "
                  f"1 - MS-SSIM + MSE, H_target={h_target} bits/symbol, {steps} CPU training "
                  "steps; 8-bit gray, RGB", functools.partial(_learned, name),
                  curve="imgcomp", use=f"lossy for MS-SSIM, rate point {point} of a, b, c")


# One model per family and rate point. The learned ones decide every probability with
# tfcomp.exact's arithmetic, so their files decode on any machine (README: Portable files).
ENTRIES = (
    ZooEntry("fixedpred-v1", "fixedpred", True,
             "non-learned baseline: gradient predictor, block-adaptive Laplacian tables; "
             "8/16-bit gray, gray+alpha, RGB, RGBA",
             functools.partial(_fixedpred, "fixedpred-v1"),
             use="lossless for any image (16-bit, alpha): the default's fallback"),
    # srec-small-v3 (18,500 CPU training steps) fine-tuned with the exact path in the loop.
    _lossless("srec", "v5", "small", "srec-small-v3 fine-tuned on the exact path",
              "lossless photos, 8-bit gray or RGB: the default",
              variant=", 4 residual blocks, gradient-coded top level"),
    # l3c-small-v2 (15,000 CPU training steps) on the exact path.
    _lossless("l3c", "v3", "small", "l3c-small-v2's weights on the exact path",
              "lossless; the L3C reproduction (SReC codes smaller)"),
    # RC: 2,250 CPU training steps of 16 x 128² crops (the run's best eval), its QP
    # classifier fitted by tools/fit_qp.py on 102 training images.
    _lossless("rc", "v1", "small", "2,250 CPU training steps, QP classifier fitted",
              "lossless; the RC reproduction (SReC codes smaller)",
              variant=", HEVC intra base layer"),
    # The v3 points (20,000 to 22,250 CPU training steps, the last 3,000 with a
    # straight-through decoder), h_s re-made as exact convolutions.
    _hyperprior("v5", 1, 0.0035, "hyperprior-ms-v3-q1 with an exact h_s"),
    _hyperprior("v5", 2, 0.0067, "hyperprior-ms-v3-q2 with an exact h_s"),
    _hyperprior("v5", 3, 0.013, "hyperprior-ms-v3-q3 with an exact h_s"),
    _hyperprior("v5", 4, 0.025, "hyperprior-ms-v3-q4 with an exact h_s"),
    # imgcomp's context model has always been exact. a: b's run forked at step 2,500 and
    # continued; b: trained from scratch, its last ~4,000 steps at a constant learning
    # rate of 3e-5; c: grown to three residual stacks on the way (README).
    _imgcomp("v2", "a", 0.4, 11250),
    _imgcomp("v3", "b", 1.2, 25000),
    _imgcomp("v5", "c", 1.9, 33300, variant=" with three residual stacks"),
    # The GAN stage on CPU: 1,400 steps of 8 x 128² crops from hyperprior-ms-v5-q1's
    # weights (README: HiFiC), the last checkpoint of each run.
    *(_hific("v1", regime, f"rate target {target} bpp",
             "1,400 CPU steps from hyperprior-ms-v5-q1")
      for regime, target in (("lo", 0.14), ("mi", 0.30), ("hi", 0.45))),
    # HiFiC on an HEVC base layer: one set of weights trained over base QPs 35 to 45
    # (README: HiFiC on a base layer), each regime at its own QP.
    *(_hific("v1", regime, f"HEVC base at QP {qp}", "3,800 CPU steps from scratch",
             config="layered", design="HEVC intra base layer, learned latents and fusion")
      for regime, qp in (("lo", 44), ("mi", 38), ("hi", 35))),
)

# Models no longer shipped: {name: (replacement, why)}. Their files are refused by name.
_MACHINE_BOUND = ("its networks computed in plain floating point, so its files decode only "
                  "on machines that sum like the encoder's")
_SUPERSEDED = "its weights are no longer shipped"
RETIRED = {
    **{f"srec-small-v{v}": ("srec-small-v5", _MACHINE_BOUND) for v in (1, 2, 3, 4)},
    **{f"l3c-small-v{v}": ("l3c-small-v3", _MACHINE_BOUND) for v in (1, 2)},
    **{f"hyperprior-ms-v{v}-q{q}": (f"hyperprior-ms-v5-q{q}", _MACHINE_BOUND)
       for v in (1, 2, 3, 4) for q in (1, 2, 3, 4)},
    **{name: ("imgcomp-v2-a", _SUPERSEDED) for name in ("imgcomp-v1-a",)},
    **{name: ("imgcomp-v3-b", _SUPERSEDED) for name in ("imgcomp-v1-b", "imgcomp-v2-b")},
    **{name: ("imgcomp-v5-c", _SUPERSEDED)
       for name in ("imgcomp-v1-c", "imgcomp-v2-c", "imgcomp-v3-c", "imgcomp-v4-c")},
}
LAST_RELEASE_WITH_RETIRED = "tfcomp 0.1.0 (git 993d1c0)"


class RetiredModelError(KeyError):
  """A model this tfcomp no longer ships; `reason` says why and what replaces it."""

  def __init__(self, name):
    replacement, why = RETIRED[name]
    self.reason = (f"{name}, which was retired ({why}); {LAST_RELEASE_WITH_RETIRED} still "
                   f"decodes its files, and {replacement} replaces it")
    super().__init__(f"model {self.reason}")


_BY_NAME = {e.name: e for e in ENTRIES}

DEFAULT = "srec-small-v5"  # what `tfcomp compress` uses without --model
DEFAULT_LOSSY = "hyperprior-ms-v5"  # the curve whose rate points `--lossy` picks from
# Codes every image kind (1-4 channels, 8/16 bits); `tfcomp compress` without --model falls
# back to it for images the default model cannot code.
UNIVERSAL = "fixedpred-v1"


def names():
  return [e.name for e in ENTRIES]


def get(name):
  """The ZooEntry called `name`; RetiredModelError (a KeyError) for a retired model, a
  KeyError naming the known models for any other unknown name."""
  try:
    return _BY_NAME[name]
  except KeyError:
    if name in RETIRED:
      raise RetiredModelError(name) from None
    raise KeyError(f"unknown model {name!r}; known models: {', '.join(names())}") from None


def default_for(image):
  """The model `tfcomp compress` uses for `image` when none is named."""
  from tfcomp import codecs  # pylint: disable=import-outside-toplevel
  try:
    load(DEFAULT).check_image(image)
  except codecs.UnsupportedImageError:
    return UNIVERSAL
  return DEFAULT


def weights_path(name):
  """The .npz of zoo model `name` (KeyError as `get` for unknown or retired names)."""
  get(name)
  return os.path.join(WEIGHTS_DIR, f"{name}.npz")


@functools.lru_cache(maxsize=None)
def weights_hash(name):
  """The hash that files of model `name` record (container.weights_hash_of its .npz),
  without loading the model."""
  with open(weights_path(name), "rb") as f:
    return container.weights_hash_of(f.read())


@functools.lru_cache(maxsize=None)
def load(name):
  """The Codec of zoo model `name` (loaded once per process)."""
  codec = get(name).load()
  codec.name = name
  return codec


@functools.lru_cache(maxsize=None)
def manifest():
  """{model name: {dataset: {figure: value}}, ...} of the shipped manifest, with "source"
  (the run that measured them) per model; {} where there is none."""
  try:
    with open(MANIFEST) as f:
      return json.load(f)["models"]
  except FileNotFoundError:
    return {}


def figures(name, dataset="kodak"):
  """The measured figures of model `name` on `dataset` ({} if not measured)."""
  return manifest().get(name, {}).get("datasets", {}).get(dataset, {})


def lossy_rate_point(bpp=None, quality=None):
  """(name, Kodak bpp) of the DEFAULT_LOSSY rate point that `--bpp` or `--quality` asks
  for: the nearest in bits per pixel on Kodak, or `quality` in [1, 100] spread evenly over
  the points from fewest bits to best quality (default 75, as JPEG's)."""
  if bpp is not None and not bpp > 0:
    raise ValueError(f"--bpp must be positive, got {bpp:g}")
  if quality is not None and not 1 <= quality <= 100:
    raise ValueError(f"--quality must be in [1, 100], got {quality:g}")
  points = sorted((figures(e.name).get("bpp"), e.name) for e in ENTRIES
                  if e.curve == DEFAULT_LOSSY)
  if not points or any(rate is None for rate, _ in points):
    raise ValueError(f"the zoo's manifest has no Kodak rates for {DEFAULT_LOSSY}'s points")
  if bpp is not None:
    rate, name = min(points, key=lambda p: abs(p[0] - bpp))
  else:
    q = 75 if quality is None else quality
    rate, name = points[round((q - 1) / 99 * (len(points) - 1))]
  return name, rate
