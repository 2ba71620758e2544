"""Probability models that both train (likelihoods, bits) and code (through tfcomp.ops)."""
from tfcomp.entropy.logistic_mixture import (DiscretizedLogisticMixture, first_channels,
                                             initial_params, num_params, split_params)
from tfcomp.entropy.uniform import UniformCoder

__all__ = ["DiscretizedLogisticMixture", "UniformCoder", "first_channels", "initial_params",
           "num_params", "split_params"]
