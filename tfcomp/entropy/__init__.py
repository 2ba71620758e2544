"""Probability models that both train (likelihoods, bits) and code (through tfcomp.ops)."""
from tfcomp.entropy.logistic_mixture import DiscretizedLogisticMixture

__all__ = ["DiscretizedLogisticMixture"]
