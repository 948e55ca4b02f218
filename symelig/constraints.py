"""Where each argument lives, declared once and used three ways.

A constraint gives (1) the SymPy assumptions of the argument's symbol, so that rewrites such as
log(a/b) = log a − log b are valid; (2) the check of a user's array, with a one-line error that
names the argument, the offending value and the allowed set; (3) random valid values for the
property tests.  ``event_dim`` is 1 for arguments that carry the category axis (last axis, size
K), 0 for one number per batch element.  Names follow ``torch.distributions.constraints``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import SymeligError

# Relative tolerance for "sums to one" / "sums to total_count": float32 inputs carry ~1e-7.
_SUM_RTOL = 1e-5


def _first_bad(label: str, values: np.ndarray, bad: np.ndarray) -> str:
    where = np.argwhere(bad)[0]
    index = f"[{', '.join(map(str, where))}]" if values.ndim else ""
    return f"{label}{index} = {values[tuple(where)].item()}"


@dataclass(frozen=True)
class Constraint:
    name: str
    allowed: str                 # the allowed set, as the error message words it
    assumptions: dict = field(default_factory=dict)
    event_dim: int = 0
    integer: bool = False
    lower: float = -np.inf       # elementwise bounds, checked for every constraint
    lower_open: bool = True
    upper: float = np.inf

    def check(self, label: str, values: np.ndarray, **context) -> None:
        """Raise SymeligError naming the first offending element of ``values``."""
        if self.event_dim and values.ndim < 1:
            raise SymeligError(f"{label} must have a category axis (last axis); got a scalar")
        bad = ~np.isfinite(values) if values.dtype.kind == "f" else np.zeros(values.shape, bool)
        if self.lower > -np.inf:
            bad |= (values <= self.lower) if self.lower_open else (values < self.lower)
        if self.upper < np.inf:
            bad |= values > self.upper
        if self.integer:
            bad |= values != np.round(values) if values.dtype.kind == "f" else False
        if bad.any():
            raise SymeligError(f"{_first_bad(label, values, bad)} is not allowed: {label} must be {self.allowed}")
        self._check_event(label, values, **context)

    def _check_event(self, label: str, values: np.ndarray, **context) -> None:
        """Constraints across the category axis (sums); none by default."""

    def sample(self, rng: np.random.Generator, shape: tuple, **context) -> np.ndarray:
        raise NotImplementedError(f"no sampler for {self.name}")


class _Real(Constraint):
    def sample(self, rng, shape, **context):
        return rng.normal(scale=3.0, size=shape)


class _Positive(Constraint):
    def sample(self, rng, shape, **context):
        return rng.gamma(1.0, size=shape) + 1e-3


class _Simplex(Constraint):
    def _check_event(self, label, values, **context):
        total = values.sum(-1)
        bad = np.abs(total - 1.0) > _SUM_RTOL * values.shape[-1]
        if bad.any():
            raise SymeligError(
                f"{label} sums to {total[tuple(np.argwhere(bad)[0])].item()} along its last axis: "
                f"{label} must be {self.allowed}"
            )

    def sample(self, rng, shape, **context):
        p = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])
        return p


class _Category(Constraint):
    def check(self, label, values, *, size, **context):
        bad = (values < 0) | (values >= size)
        if values.dtype.kind == "f":
            bad |= ~np.isfinite(values) | (values != np.round(values))
        elif values.dtype.kind not in "iub":
            raise SymeligError(f"{label} must be integer category indices, got dtype {values.dtype}")
        if bad.any():
            raise SymeligError(
                f"{_first_bad(label, values, bad)} is not allowed: {label} must be a category "
                f"index in {{0, …, {size - 1}}}"
            )

    def sample(self, rng, shape, *, size, **context):
        return rng.integers(0, size, size=shape)


class _Counts(Constraint):
    def _check_event(self, label, values, *, total_count=None, **context):
        if total_count is None:
            return
        total = values.sum(-1)
        bad = np.broadcast_to(total != total_count, np.broadcast_shapes(total.shape, np.shape(total_count)))
        if bad.any():
            where = tuple(np.argwhere(bad)[0])
            raise SymeligError(
                f"{label} sums to {np.broadcast_to(total, bad.shape)[where].item()} along its last axis but "
                f"total_count is {np.broadcast_to(total_count, bad.shape)[where].item()}: the counts must sum to total_count"
            )

    def sample(self, rng, shape, *, probs, total_count, **context):
        """Counts of ``total_count`` draws (one per batch element) from ``probs``."""
        return rng.multinomial(np.broadcast_to(total_count, shape[:-1]), probs)


class _NonnegativeInteger(Constraint):
    def sample(self, rng, shape, **context):
        return rng.integers(0, 12, size=shape)


real = _Real("real", "a finite real number", {"real": True})
real_vector = _Real("real_vector", "a vector of finite real numbers", {"real": True}, event_dim=1)
positive = _Positive("positive", "a finite number > 0", {"positive": True}, lower=0.0)
# Relative weights as PyTorch's Categorical(probs=...) accepts them: zeros allowed (a category
# that can never be drawn); the derivation assumes p > 0, where its formula lives.
nonnegative_vector = _Positive(
    "nonnegative_vector", "a vector of finite numbers ≥ 0", {"positive": True},
    event_dim=1, lower=0.0, lower_open=False,
)
simplex = _Simplex(
    "simplex", "a probability vector (entries ≥ 0 summing to 1)", {"positive": True},
    event_dim=1, lower=0.0, lower_open=False, upper=1.0,
)
category = _Category("category", "a category index", {"integer": True, "nonnegative": True}, integer=True)
nonnegative_integer = _NonnegativeInteger(
    "nonnegative_integer", "an integer ≥ 0", {"integer": True, "nonnegative": True},
    integer=True, lower=0.0, lower_open=False,
)
counts = _Counts(
    "counts", "a vector of integer counts ≥ 0", {"integer": True, "nonnegative": True},
    event_dim=1, integer=True, lower=0.0, lower_open=False,
)
