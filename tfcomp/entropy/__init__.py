"""Probability models that both train (likelihoods, bits) and code (through tfcomp.ops)."""
from tfcomp.entropy.logistic_mixture import DiscretizedLogisticMixture, num_params, split_params

__all__ = ["DiscretizedLogisticMixture", "num_params", "split_params"]
