"""Samplers: Metropolis chains, exact enumeration and real-space walkers (see
:mod:`nqs.sampling.base`)."""

from nqs.sampling.base import Sampler, Samples
from nqs.sampling.exact import ExactSampler, batched_log_psi, born_weights
from nqs.sampling.metropolis import MetropolisSampler, MetropolisState
from nqs.sampling.rules import (
    AntiparallelExchangeRule,
    ConnectedRule,
    ExchangeRule,
    HopRule,
    LocalRule,
    PairHopRule,
    Rule,
    default_rule,
)
from nqs.sampling.walkers import MCMCState, WalkerSampler

__all__ = [
    "AntiparallelExchangeRule",
    "ConnectedRule",
    "ExactSampler",
    "ExchangeRule",
    "HopRule",
    "LocalRule",
    "MCMCState",
    "MetropolisSampler",
    "MetropolisState",
    "PairHopRule",
    "Rule",
    "Sampler",
    "Samples",
    "WalkerSampler",
    "batched_log_psi",
    "born_weights",
    "default_rule",
]
