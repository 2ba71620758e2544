"""A short fuzz run of every decoder: random and mutated inputs only ever raise the
expected errors. tools/fuzz.py runs the same targets for 100k+ inputs."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfcomp import testing

TARGETS = sorted(testing.fuzz_targets())


def _decode(name, data):
  decode, _ = testing.fuzz_targets()[name]
  try:
    decode(data)
  except testing.DECODE_ERRORS:
    pass


@pytest.mark.parametrize("name", TARGETS)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.binary(max_size=600))
def test_random_bytes(name, data):
  _decode(name, data)


@pytest.mark.parametrize("name", TARGETS)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32 - 1))
def test_mutated_valid_inputs(name, seed):
  rng = np.random.default_rng(seed)
  _, valid = testing.fuzz_targets()[name]
  _decode(name, testing.mutate(valid, rng))
