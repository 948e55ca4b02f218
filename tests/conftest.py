"""Shared helpers: every test that takes ``entry`` runs once per catalog entry."""
from __future__ import annotations

import numpy as np
import pytest

import symelig
from symelig import constraints

ENTRIES = symelig.catalog()


def entry_id(entry) -> str:
    return f"{entry.family}-{entry.param}"


def pytest_generate_tests(metafunc):
    if "entry" in metafunc.fixturenames:
        metafunc.parametrize("entry", ENTRIES, ids=entry_id)


def random_arguments(d, rng, batch=(3,), size=4, dtype=np.float64) -> dict:
    """Valid random arguments for a derivation, drawn from its declared constraints."""
    family = d.symbolic.family
    args = {}
    for name, c in d.symbolic.parametrization.parameters.items():
        shape = batch + (size,) if c.event_dim else batch
        args[name] = c.sample(rng, shape).astype(dtype)
    for name, c in family.arguments.items():
        args[name] = c.sample(rng, batch) + 1
    if family.value is constraints.category:
        x = family.value.sample(rng, batch, size=size)
    else:
        x = family.value.sample(rng, batch + (size,), probs=np.full(size, 1.0 / size), total_count=args["total_count"])
    return {"x": x, **args}
