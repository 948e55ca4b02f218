"""Shared helpers: every test that takes ``entry`` runs once per catalog entry."""
from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

import symelig
import symelig.family
from symelig import constraints

# The CLI's derivation cache goes to a fresh folder per test session (subprocesses inherit it),
# so tests neither read a developer's cache nor leave files in ~/.cache.
os.environ["SYMELIG_CACHE_DIR"] = tempfile.mkdtemp(prefix="symelig-cache-")

import lab_families  # noqa: E402,F401  (registers a user family: every test runs over it too)

ENTRIES = symelig.catalog()


def entry_id(entry) -> str:
    return f"{entry.family}-{entry.param}"


def has_category_axis(entry) -> bool:
    family = symelig.family.families()[entry.family]
    return any(c.event_dim for c in [family.value, *family.parameters.values()])


VECTOR_ENTRIES = [e for e in ENTRIES if has_category_axis(e)]


def pytest_generate_tests(metafunc):
    if "entry" in metafunc.fixturenames:
        metafunc.parametrize("entry", ENTRIES, ids=entry_id)
    if "vector_entry" in metafunc.fixturenames:
        metafunc.parametrize("vector_entry", VECTOR_ENTRIES, ids=entry_id)


def random_arguments(d, rng, batch=(3,), size=4, dtype=np.float64) -> dict:
    """Valid random arguments for a derivation, drawn from its declared constraints."""
    family = d.symbolic.family
    args = {}
    for name, c in d.symbolic.parametrization.parameters.items():
        shape = batch + (size,) if c.event_dim else batch
        args[name] = c.sample(rng, shape).astype(dtype)
    for name, c in family.arguments.items():
        # a count argument (total_count) from 1; a mask carries the category axis; block sizes
        # (nvec, one vector for the batch) split the K categories into two blocks; the others in
        # order, each given those before it (high > low); a count or positive one from 1
        if c.own_axis:
            args[name] = c.sample(rng, (min(2, size),), size=size)
        else:
            args[name] = c.sample(rng, batch + (size,), **args) if c.event_dim else c.sample(rng, batch, **args) + (c.lower == 0)
    value = family.value
    placed = len(args["nvec"]) if "nvec" in args else size
    shape = batch + (placed,) if value.event_dim else batch
    context = {"size": size, "probs": np.full(size, 1.0 / size), **{n: args.get(n) for n in family.arguments}}
    return {"x": value.sample(rng, shape, **context), **args}


# Parameters away from the edges of their constraints, for tests whose reference (quadrature)
# needs a smooth density: shape parameters ≥ 1 keep Beta and Gamma densities bounded at 0.
_MODERATE = {
    "real": (0.5, 1.5), "real_vector": (0.5, 1.5), "positive": (1.0, 3.0), "positive_vector": (1.0, 3.0),
    "nonnegative_vector": (1.0, 3.0), "negative": (-2.0, -0.5), "above_minus_one": (0.0, 2.0),
    "above_minus_one_vector": (0.0, 2.0), "unit_interval": (0.2, 0.8),
}


def moderate_arguments(d, rng, size=4) -> dict:
    args = random_arguments(d, rng, batch=(), size=size)
    for name, c in d.symbolic.parametrization.parameters.items():
        if c.name in _MODERATE:
            low, high = _MODERATE[c.name]
            args[name] = rng.uniform(low, high, size=np.shape(args[name]))
        elif c is constraints.simplex:
            args[name] = rng.dirichlet(np.full(size, 3.0))
    family = d.symbolic.family
    # real bounds (a truncation's low, high) are drawn relative to loc and scale: again, with the
    # moderate ones, and the sample inside them
    bounds = [n for n, c in family.arguments.items() if not c.event_dim and c.lower != 0]
    for name in bounds:
        args[name] = family.arguments[name].sample(rng, np.shape(args[name]), **{n: v for n, v in args.items() if n != name})
    if bounds:
        args["x"] = family.value.sample(rng, np.shape(args["x"]), **{n: v for n, v in args.items() if n != "x"})
    return args


def assert_no_negative_zero(values, what="") -> None:
    """The standard: a zero, whatever made it (−π·c at a masked category, an underflow of a
    negative value), is returned as +0.0, never −0.0."""
    for name, value in (values.items() if isinstance(values, dict) else [("", values)]):
        value = np.asarray(value.cpu() if hasattr(value, "cpu") else value, dtype=float)
        negative_zero = (value == 0) & np.signbit(value)
        assert not np.any(negative_zero), f"{what} {name}: -0.0 at {np.argwhere(negative_zero).tolist()}"
