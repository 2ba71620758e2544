"""RC's residual stream layout, read and written without TensorFlow.

An RC tile has two streams (tfcomp.models.rc): the base layer (tfcomp.base_layer) and

    residual stream = k_R k_G k_B (int8 each) + the mixture coder's bytes

where tau_c = k_c / TAU_STEPS moves channel c's log-scales (the paper's per-image scale
factors). The model codes with it and `tfcomp info` reports it; both read it here, since
`info` runs without importing TensorFlow.
"""
import numpy as np

from tfcomp import container

TAU_STEPS = 16  # tau's resolution: 1/16 in log-scale
TAU_MAX = 32  # |k| <= 32: factors in [e^-2, e^2] on the scales
TAU_BYTES = 3  # one int8 k per channel, R G B


def pack_residual(k, coded):
  """The residual stream: the tau steps `k` [3] (integers in [-TAU_MAX, TAU_MAX]), then
  the coder's bytes `coded`."""
  k = np.asarray(k, np.int64)
  if k.shape != (TAU_BYTES,) or np.any(np.abs(k) > TAU_MAX):
    raise ValueError(f"tau steps must be {TAU_BYTES} integers in [-{TAU_MAX}, {TAU_MAX}], "
                     f"got {k.tolist()}")
  return k.astype(np.int8).tobytes() + bytes(coded)


def unpack_residual(stream):
  """(k int64 [3], the coder's bytes) of a residual stream; FormatError if damaged."""
  stream = bytes(stream)
  if len(stream) < TAU_BYTES:
    raise container.FormatError("residual stream lacks its tau bytes")
  k = np.frombuffer(stream[:TAU_BYTES], np.int8).astype(np.int64)
  if np.any(np.abs(k) > TAU_MAX):
    raise container.FormatError(f"tau steps {k.tolist()} out of [-{TAU_MAX}, {TAU_MAX}]")
  return k, stream[TAU_BYTES:]


def describe_tau(k):
  """tau as `tfcomp info` shows it: '+2/16 -1/16 +0/16'."""
  return " ".join(f"{int(v):+d}/{TAU_STEPS}" for v in k)
