"""The model zoo: named, versioned codecs with the weights shipped inside the package.

Names begin with their family (`l3c-...`, `hyperprior-...`, ...). A file records the name
and the weights hash of the model that wrote it, so `load(name)` must keep returning the
same weights for a name; new weights get a new name.
"""
import dataclasses
import functools
import os

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")


@dataclasses.dataclass(frozen=True)
class ZooEntry:
  name: str
  family: str
  lossless: bool
  description: str
  load: object  # () -> tfcomp.codecs.Codec
  curve: str = ""  # lossy models: rate points of one RD curve share this name

  def __post_init__(self):
    if not self.name.startswith(self.family + "-"):
      raise ValueError(f"zoo name {self.name!r} must begin with its family {self.family!r}")


def _fixedpred(name):
  from tfcomp.codecs import fixedpred  # pylint: disable=import-outside-toplevel
  return fixedpred.FixedPredCodec(name, os.path.join(WEIGHTS_DIR, f"{name}.npz"))


def _learned(name):
  from tfcomp import codecs  # pylint: disable=import-outside-toplevel
  return codecs.from_weights(name, os.path.join(WEIGHTS_DIR, f"{name}.npz"))


def _hyperprior(version, quality, lmbda, steps, ste_steps=0):
  name = f"hyperprior-ms-{version}-q{quality}"
  decoder = f", the last {ste_steps} with a straight-through decoder" if ste_steps else ""
  return ZooEntry(name, "hyperprior", False,
                  f"mean-scale hyperprior (Minnen et al. 2018, no context; config "
                  f"small), MSE, lambda={lmbda}, {steps} CPU training steps{decoder}; "
                  "8-bit gray, RGB",
                  functools.partial(_learned, name), curve=f"hyperprior-ms-{version}")


# Each learned lossless family's system and paper, for the zoo's descriptions.
_LOSSLESS_PAPERS = {"srec": ("SReC", "Cao et al. 2020"), "l3c": ("L3C", "Mentzer et al. 2019")}


def _lossless(family, version, config, steps, variant=""):
  name = f"{family}-{config}-{version}"
  system, paper = _LOSSLESS_PAPERS[family]
  return ZooEntry(name, family, True,
                  f"{system} ({paper}; config {config}{variant}, CPU-sized), {steps} CPU "
                  "training steps; 8-bit gray, RGB", functools.partial(_learned, name))


def _imgcomp(version, point, h_target, steps, variant=""):
  name = f"imgcomp-{version}-{point}"
  return ZooEntry(name, "imgcomp", False,
                  f"imgcomp (Mentzer et al. 2018; config {point}{variant}, CPU-sized), "
                  f"1 - MS-SSIM + MSE, H_target={h_target} bits/symbol, {steps} CPU training "
                  "steps; 8-bit gray, RGB", functools.partial(_learned, name),
                  curve=f"imgcomp-{version}")


ENTRIES = (
    ZooEntry("fixedpred-v1", "fixedpred", True,
             "non-learned baseline: gradient predictor, block-adaptive Laplacian tables; "
             "8/16-bit gray, gray+alpha, RGB, RGBA",
             functools.partial(_fixedpred, "fixedpred-v1")),
    # One RD curve: q3 trained from scratch, the others fine-tuned from its step 3250.
    _hyperprior("v1", 1, 0.0035, 4250),
    _hyperprior("v1", 2, 0.0067, 4250),
    _hyperprior("v1", 3, 0.013, 4500),
    _hyperprior("v1", 4, 0.025, 4250),
    # The same curve trained further: q3 continued to step 17,500, the others fine-tuned
    # for 2,000 steps from its step 15,000.
    _hyperprior("v2", 1, 0.0035, 17000),
    _hyperprior("v2", 2, 0.0067, 17000),
    _hyperprior("v2", 3, 0.013, 17500),
    _hyperprior("v2", 4, 0.025, 17000),
    # Each v2 run continued for 3,000 steps (q3 from step 19,250) with ste_decoder and a
    # learning rate decaying from 1e-4.
    _hyperprior("v3", 1, 0.0035, 20000, ste_steps=3000),
    _hyperprior("v3", 2, 0.0067, 20000, ste_steps=3000),
    _hyperprior("v3", 3, 0.013, 22250, ste_steps=3000),
    _hyperprior("v3", 4, 0.025, 20000, ste_steps=3000),
    # Each v3 point continued with ste_decoder, the learning rate decaying from 1e-4
    # (half-life 6,000 steps): 7,800 steps for q1, q2 and q4, 11,400 for q3.
    _hyperprior("v4", 1, 0.0035, 27800, ste_steps=10800),
    _hyperprior("v4", 2, 0.0067, 27800, ste_steps=10800),
    _hyperprior("v4", 3, 0.013, 33650, ste_steps=14400),
    _hyperprior("v4", 4, 0.025, 27800, ste_steps=10800),
    # Trained from scratch for one CPU session (its best 4-image Kodak eval).
    _lossless("srec", "v1", "small", 3500, variant=", uniform top level"),
    # v1 continued 2,000 steps, then 7,000 more with the gradient-coded top level.
    _lossless("srec", "v2", "small", 12500, variant=", gradient-coded top level"),
    # v2 grown to 4 residual blocks per sub-step network (the new ones start as the
    # identity), then 6,000 steps of 4x144² crops.
    _lossless("srec", "v3", "small", 18500,
              variant=", 4 residual blocks, gradient-coded top level"),
    # v3 widened to 48 features (weights reading the new channels start at zero), then
    # 3,000 steps of 4x144² crops, the learning rate decaying from 7e-5 to 1.2e-5.
    _lossless("srec", "v4", "small", 21500,
              variant=", 48 features, 4 residual blocks, gradient-coded top level"),
    # Trained from scratch for one CPU session (its best 4-image Kodak eval).
    _lossless("l3c", "v1", "small", 12000),
    # v1 continued for 3,000 steps of 8x96² crops, the learning rate decaying from 6e-5.
    _lossless("l3c", "v2", "small", 15000),
    # One RD curve: b trained from scratch, a and c fine-tuned from its step 2500.
    _imgcomp("v1", "a", 0.4, 6500),
    _imgcomp("v1", "b", 1.2, 6750),
    _imgcomp("v1", "c", 1.9, 6500),
    # The same runs, continued.
    _imgcomp("v2", "a", 0.4, 11250),
    _imgcomp("v2", "b", 1.2, 11500),
    _imgcomp("v2", "c", 1.9, 11250),
    # b and c continued again, their last ~4,000 steps at a constant learning rate of 3e-5.
    _imgcomp("v3", "b", 1.2, 25000),
    _imgcomp("v3", "c", 1.9, 21500),
    # v3-c grown to two residual stacks (the new one starting as the identity) and trained
    # on; its last 2,000 steps with the MSE term's weight cut from 0.5 to 0.1.
    _imgcomp("v4", "c", 1.9, 28300, variant=" with two residual stacks"),
    # v4-c's run continued 1,000 steps, then grown to three residual stacks and trained
    # 4,000 steps more (MSE weight 0.1; the step with the best 4-image eval MS-SSIM).
    _imgcomp("v5", "c", 1.9, 33300, variant=" with three residual stacks"),
)
_BY_NAME = {e.name: e for e in ENTRIES}

DEFAULT = "srec-small-v3"  # what `tfcomp compress` uses without --model
# Codes every image kind (1-4 channels, 8/16 bits); `tfcomp compress` without --model falls
# back to it for images the default model cannot code.
UNIVERSAL = "fixedpred-v1"


def names():
  return [e.name for e in ENTRIES]


def get(name):
  """The ZooEntry called `name`; KeyError naming the known models otherwise."""
  try:
    return _BY_NAME[name]
  except KeyError:
    raise KeyError(f"unknown model {name!r}; known models: {', '.join(names())}") from None


def default_for(image):
  """The model `tfcomp compress` uses for `image` when none is named."""
  from tfcomp import codecs  # pylint: disable=import-outside-toplevel
  try:
    load(DEFAULT).check_image(image)
  except codecs.UnsupportedImageError:
    return UNIVERSAL
  return DEFAULT


@functools.lru_cache(maxsize=None)
def load(name):
  """The Codec of zoo model `name` (loaded once per process)."""
  codec = get(name).load()
  codec.name = name
  return codec
