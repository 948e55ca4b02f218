"""Hypothesis: over valid arguments, extreme ones included, kernels return finite values of the
input's dtype and the right shape, for every catalog entry."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symelig
from symelig import constraints

DTYPES = [np.float32, np.float64]
# Magnitudes a policy network can put out: logits of ±1e4, relative probabilities from 1e-30
# (an almost impossible sampled category) to 1e6, and exact zeros in unsampled categories.
_REAL = st.floats(-1e4, 1e4, allow_nan=False, allow_subnormal=False)
_WEIGHT = st.one_of(st.just(0.0), st.floats(1e-30, 1e6, allow_subnormal=False))


@st.composite
def arguments(draw, d):
    family = d.symbolic.family
    size = draw(st.integers(1, 8))
    batch = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from(DTYPES))
    args = {}
    if family.value is constraints.category:
        args["x"] = np.array(draw(st.lists(st.integers(0, size - 1), min_size=batch, max_size=batch)))
    else:
        args["x"] = np.array(draw(st.lists(st.lists(st.integers(0, 30), min_size=size, max_size=size), min_size=batch, max_size=batch)))
        args["total_count"] = args["x"].sum(-1)
    for name, c in d.symbolic.parametrization.parameters.items():
        elements = _REAL if c is constraints.real_vector else _WEIGHT
        value = np.array(draw(st.lists(st.lists(elements, min_size=size, max_size=size), min_size=batch, max_size=batch)))
        if c is not constraints.real_vector:
            # the sampled categories need probability > 0, or the sample is outside the support
            needed = np.zeros_like(value, bool)
            if family.value is constraints.category:
                needed[np.arange(batch), args["x"]] = True
            else:
                needed = args["x"] > 0
            value = np.where(needed & (value == 0), 1.0, value)
            if value.sum(-1).min() == 0:
                value[:, 0] += 1.0
        if c is constraints.simplex:
            value = value / value.sum(-1, keepdims=True)
        args[name] = value.astype(dtype)
    return args, dtype


@pytest.mark.parametrize("family,param", [(e.family, e.param) for e in symelig.catalog()],
                         ids=[f"{e.family}-{e.param}" for e in symelig.catalog()])
def test_finite_and_dtype_preserving(family, param):
    d = symelig.derive(family, param)

    @settings(max_examples=60, deadline=None)
    @given(arguments(d))
    def check(drawn):
        args, dtype = drawn
        try:
            e = d.eligibility(**args)
        except symelig.SymeligError as err:
            # float32 rounding can push a tiny normalized probability to 0 or a sum off 1
            assert dtype == np.float32 and ("probability 0" in str(err) or "sums to" in str(err)), err
            return
        lp = d.log_prob(**args)
        assert lp.dtype == dtype and lp.shape == args["x"].shape[: lp.ndim]
        for name, value in e.items():
            assert value.dtype == dtype and value.shape == args[name].shape
            assert np.all(np.isfinite(value)), (name, args, value)

    check()
