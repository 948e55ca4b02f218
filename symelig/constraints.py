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
SUM_RTOL = 1e-5


def first_bad(label: str, values: np.ndarray, bad: np.ndarray) -> str:
    where = np.argwhere(bad)[0]
    index = f"[{', '.join(str(int(w)) for w in where)}]" if values.ndim else ""
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
    upper_open: bool = False
    notation: str = ""           # the set in mathematical notation, for `symelig list`
    own_axis: bool = False       # event_dim 1 along an axis of its own length (an ordering of k ≤ K categories)
    shape: str = ""              # an own axis's shape, as the kernels' docstrings write it

    def check(self, label: str, values: np.ndarray, **context) -> None:
        """Raise SymeligError naming the first offending element of ``values``."""
        if self.event_dim and values.ndim < 1:
            raise SymeligError(f"{label} must have a category axis (last axis); got a scalar")
        bad = ~np.isfinite(values) if values.dtype.kind == "f" else np.zeros(values.shape, bool)
        if self.lower > -np.inf:
            bad |= (values <= self.lower) if self.lower_open else (values < self.lower)
        if self.upper < np.inf:
            bad |= (values >= self.upper) if self.upper_open else (values > self.upper)
        if self.integer:
            bad |= values != np.round(values) if values.dtype.kind == "f" else False
        if bad.any():
            raise SymeligError(f"{first_bad(label, values, bad)} is not allowed: {label} must be {self.allowed}")
        self._check_event(label, values, **context)

    def _check_event(self, label: str, values: np.ndarray, **context) -> None:
        """Constraints across the category axis (sums); none by default."""

    def bounds(self, **context) -> tuple:
        """(lower, upper) of a scalar, given the arguments it may depend on (a truncated
        family's low and high): what an integral over the support runs over."""
        return self.lower, self.upper

    def sample(self, rng: np.random.Generator, shape: tuple, **context) -> np.ndarray:
        raise NotImplementedError(f"no sampler for {self.name}")


class _Real(Constraint):
    def sample(self, rng, shape, **context):
        return rng.normal(scale=3.0, size=shape)


class _Positive(Constraint):
    def sample(self, rng, shape, **context):
        return rng.gamma(1.0, size=shape) + 1e-3


class Weights(_Positive):
    """Relative weights: each ≥ 0, not all 0 (they are normalized by their sum)."""

    def _check_event(self, label, values, **context):
        with np.errstate(over="ignore"):  # an infinite sum is reported below, not warned about
            total = values.sum(-1)
        for bad, problem in ((~(total > 0), "is all zeros"), (~np.isfinite(total), "sums past the float range")):
            if bad.any():
                where = tuple(int(w) for w in np.argwhere(bad)[0])
                index = f" at batch index {list(where)}" if where else ""
                raise SymeligError(
                    f"{label}{index} {problem}: {label} must have at least one entry > 0 and a finite sum "
                    "(only ratios matter: rescale them)"
                )


class Simplex(Constraint):
    def _check_event(self, label, values, **context):
        total = values.sum(-1)
        bad = np.abs(total - 1.0) > SUM_RTOL * values.shape[-1]
        if bad.any():
            raise SymeligError(
                f"{label} sums to {total[tuple(np.argwhere(bad)[0])].item()} along its last axis: "
                f"{label} must be {self.allowed}"
            )

    def sample(self, rng, shape, **context):
        p = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])
        return p


class _Category(Constraint):
    """A category index in {0, …, size − 1}; where a ``mask`` is given (masked_categorical),
    also one that the mask allows."""

    def check(self, label, values, *, size, mask=None, **context):
        bad = (values < 0) | (values >= size)
        if values.dtype.kind == "f":
            bad |= ~np.isfinite(values) | (values != np.round(values))
        elif values.dtype.kind not in "iub":
            raise SymeligError(f"{label} must be integer category indices, got dtype {values.dtype}")
        if bad.any():
            raise SymeligError(
                f"{first_bad(label, values, bad)} is not allowed: {label} must be a category "
                f"index in {{0, …, {size - 1}}}"
            )
        if mask is not None:
            _check_allowed(label, values, mask)

    def sample(self, rng, shape, *, size, mask=None, **context):
        if mask is not None:  # a uniformly random allowed category
            weights = rng.random(shape + (size,)) * np.broadcast_to(mask, shape + (size,))
            return weights.argmax(-1)
        return rng.integers(0, size, size=shape)


def _check_allowed(label, values, mask):
    index = values.astype(np.intp)
    shape = np.broadcast_shapes(index.shape, mask.shape[:-1])
    index = np.broadcast_to(index, shape)[..., None]
    allowed = np.take_along_axis(np.broadcast_to(mask, shape + mask.shape[-1:]), index, -1)[..., 0]
    if not allowed.all():
        where = tuple(int(w) for w in np.argwhere(~allowed)[0])
        raise SymeligError(
            f"{label}{list(where) if where else ''} = {index[where].item()} is a masked category: "
            f"{label} must be a category index the mask allows (mask True there)"
        )


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
        return rng.integers(0, min(12, self.upper + 1), size=shape)


class _UpTo(Constraint):
    """An integer count from 0 to total_count (binomial)."""

    def _check_event(self, label, values, *, total_count=None, **context):
        if total_count is None:
            return
        bad = np.broadcast_to(values > total_count, np.broadcast_shapes(values.shape, np.shape(total_count)))
        if bad.any():
            where = tuple(np.argwhere(bad)[0])
            raise SymeligError(
                f"{label} = {np.broadcast_to(values, bad.shape)[where].item()} exceeds total_count = "
                f"{np.broadcast_to(total_count, bad.shape)[where].item()}: {label} must be {self.allowed}"
            )

    def sample(self, rng, shape, *, total_count, **context):
        return rng.binomial(np.broadcast_to(total_count, shape).astype(int), 0.5)


class _Interval(Constraint):
    def sample(self, rng, shape, **context):
        return rng.uniform(0.02, 0.98, size=shape) * (self.upper - self.lower) + self.lower


class _AboveMinusOne(Constraint):
    def sample(self, rng, shape, **context):
        return rng.gamma(1.0, size=shape) - 1 + 1e-3


class _Negative(Constraint):
    def sample(self, rng, shape, **context):
        return -rng.gamma(1.0, size=shape) - 1e-3


real = _Real("real", "a finite real number", {"real": True}, notation="ℝ")
real_vector = _Real("real_vector", "a vector of finite real numbers", {"real": True}, event_dim=1, notation="ℝ^K")
positive = _Positive("positive", "a finite number > 0", {"positive": True}, lower=0.0, notation="(0, ∞)")
# Relative weights as PyTorch's Categorical(probs=...) accepts them: zeros allowed (a category
# that can never be drawn); the derivation assumes p > 0, where its formula lives.
nonnegative_vector = Weights(
    "nonnegative_vector", "a vector of finite numbers ≥ 0", {"positive": True},
    event_dim=1, lower=0.0, lower_open=False,
)
# Dirichlet samples live in the open simplex: ∂ log p/∂α_j = log x_j is undefined at x_j = 0.
open_simplex = Simplex(
    "open_simplex", "a probability vector with entries > 0 summing to 1", {"positive": True},
    event_dim=1, lower=0.0, upper=1.0, notation="open simplex",
)
simplex = Simplex(
    "simplex", "a probability vector (entries ≥ 0 summing to 1)", {"positive": True},
    event_dim=1, lower=0.0, lower_open=False, upper=1.0, notation="simplex Δ^{K-1}",
)
negative = _Negative("negative", "a finite number < 0", {"negative": True}, upper=0.0, upper_open=True)
# natural parameters α − 1 of gamma, beta and Dirichlet concentrations
above_minus_one = _AboveMinusOne("above_minus_one", "a finite number > -1", {"real": True}, lower=-1.0)
above_minus_one_vector = _AboveMinusOne(
    "above_minus_one_vector", "a vector of finite numbers > -1", {"real": True}, event_dim=1, lower=-1.0,
)
unit_interval = _Interval(
    "unit_interval", "a number in the open interval (0, 1)", {"positive": True}, lower=0.0, upper=1.0, upper_open=True,
    notation="(0, 1)",
)
angle = _Interval("angle", "an angle in [-π, π]", {"real": True}, lower=-np.pi, lower_open=False, upper=np.pi, notation="[-π, π]")
positive_vector = _Positive("positive_vector", "a vector of finite numbers > 0", {"positive": True}, event_dim=1, lower=0.0)
binary = _NonnegativeInteger("binary", "0 or 1", {"integer": True, "nonnegative": True}, integer=True, lower=0.0, lower_open=False, upper=1.0, notation="{0, 1}")
up_to_total_count = _UpTo(
    "up_to_total_count", "an integer from 0 to total_count", {"integer": True, "nonnegative": True},
    integer=True, lower=0.0, lower_open=False, notation="{0, …, n}",
)
category = _Category("category", "a category index", {"integer": True, "nonnegative": True}, integer=True, notation="{0, …, K-1}")
nonnegative_integer = _NonnegativeInteger(
    "nonnegative_integer", "an integer ≥ 0", {"integer": True, "nonnegative": True},
    integer=True, lower=0.0, lower_open=False, notation="{0, 1, 2, …}",
)
counts = _Counts(
    "counts", "a vector of integer counts ≥ 0", {"integer": True, "nonnegative": True},
    event_dim=1, integer=True, lower=0.0, lower_open=False, notation="ℕ^K, Σx = n",
)


class _Mask(Constraint):
    """Booleans over the categories, True where a category is allowed; at least one per row."""

    def check(self, label, values, **context):
        if values.ndim < 1:
            raise SymeligError(f"{label} must have a category axis (last axis); got a scalar")
        if values.dtype.kind != "b":
            raise SymeligError(f"{label} must be booleans (True = allowed), got dtype {values.dtype}")
        empty = ~values.any(-1)
        if empty.any():
            where = [int(w) for w in np.argwhere(empty)[0]]
            at = f" at batch index {where}" if where else ""
            raise SymeligError(f"{label}{at} allows no category: each row of {label} must have at least one True")

    def sample(self, rng, shape, **context):
        allowed = rng.random(shape) < 0.6
        allowed[..., 0] |= ~allowed.any(-1)  # at least one allowed category per row
        return allowed


# positive: the formulas hold where m = 1 (an allowed category), as the probs formulas hold where p > 0
mask = _Mask("mask", "booleans, True where a category is allowed", {"positive": True}, event_dim=1, notation="{0, 1}^K")


# Bounds of a squashed action (tanh_normal): ``low`` and ``high`` per coordinate, low < high,
# not differentiated.  Their random values straddle 0 (low < 0 < high), so that each can be
# drawn without the other and still be valid.
class _Low(Constraint):
    def sample(self, rng, shape, **context):
        return -0.25 - rng.gamma(1.0, size=shape)


class _High(Constraint):
    """The upper bound: above ``low``, which every check of it is given."""

    def _check_event(self, label, values, *, low, **context):
        low, values = np.broadcast_arrays(low, values)
        _first_outside(label, values, ~(values > low), "> low", "low", low)

    def sample(self, rng, shape, **context):
        return 0.25 + rng.gamma(1.0, size=shape)


class _Between(Constraint):
    """A squashed action: strictly between the arguments ``low`` and ``high``, which every
    check and sample of it is given (a call without them is a bug: TypeError)."""

    def _check_event(self, label, values, *, low, high, **context):
        low, values, high = np.broadcast_arrays(low, values, high)
        allowed = "strictly between low and high (an action at a bound has no pre-squash u)"
        _first_outside(label, values, ~(values > low), allowed, "low", low)
        _first_outside(label, values, ~(values < high), allowed, "high", high)

    def sample(self, rng, shape, *, low, high, **context):
        """low + (high − low)(tanh(u) + 1)/2 at u ~ N(0, 1.5²): a policy's actions, some near a bound."""
        return low + (high - low) * (np.tanh(rng.normal(scale=1.5, size=shape)) + 1) / 2


def _first_outside(label, values, bad, allowed, bound_label, bound) -> None:
    """One line naming the first offending element and the bound it crosses."""
    if bad.any():
        where = tuple(int(w) for w in np.argwhere(bad)[0])
        index = f"[{', '.join(map(str, where))}]" if where else ""
        raise SymeligError(
            f"{label}{index} = {values[where].item()} is not allowed: {label} must be {allowed}; "
            f"here {bound_label}{index} = {bound[where].item()}"
        )


low = _Low("low", "a vector of finite real numbers", {"real": True}, event_dim=1, notation="ℝ^K")
high = _High("high", "a vector of finite real numbers > low", {"real": True}, event_dim=1, notation="ℝ^K")
squashed = _Between(
    "squashed", "a vector of numbers strictly between low and high", {"real": True}, event_dim=1, notation="(low, high)^K",
)


class _Ordering(Constraint):
    """k ≤ K distinct category indices along the last axis, first placed first (Plackett–Luce):
    a full permutation when k = K, a top-k list otherwise."""

    def check(self, label, values, *, size, **context):
        if values.ndim < 1:
            raise SymeligError(f"{label} must be an ordering along its last axis; got a scalar")
        if values.dtype.kind == "f":  # whole numbers in a float array are indices too (as for a category)
            bad = ~np.isfinite(values) | (values != np.round(values))
            if bad.any():
                raise SymeligError(f"{first_bad(label, values, bad)} is not allowed: {label} must hold integer category indices")
        elif values.dtype.kind not in "iu":
            raise SymeligError(f"{label} must be integer category indices, got dtype {values.dtype}")
        if values.shape[-1] > size:
            raise SymeligError(f"{label} places {values.shape[-1]} categories but there are {size}: "
                               f"{label} must be an ordering of at most K = {size} distinct categories")
        bad = (values < 0) | (values >= size)
        if bad.any():
            raise SymeligError(f"{first_bad(label, values, bad)} is not allowed: {label} must hold "
                               f"category indices in {{0, …, {size - 1}}}")
        ordered = np.sort(values, axis=-1)
        repeated = (ordered[..., 1:] == ordered[..., :-1]).any(-1)
        if repeated.any():
            where = [int(w) for w in np.argwhere(repeated)[0]]
            at = f"{label}{where}" if where else label
            row = values[tuple(where)]
            twice = ordered[tuple(where)][1:][ordered[tuple(where)][1:] == ordered[tuple(where)][:-1]][0]
            raise SymeligError(f"{at} = {row.tolist()} places category {int(twice)} twice: "
                               f"{label} must be an ordering of distinct categories")

    def sample(self, rng, shape, *, size, **context):
        """Uniformly random orderings of ``shape[-1]`` ≤ K = ``size`` categories."""
        return np.argsort(rng.random(shape[:-1] + (size,)), axis=-1)[..., : shape[-1]]


# an ordering: x_0 first, then x_1, …; k = x.shape[-1] ≤ K categories, each at most once
ordering = _Ordering(
    "ordering", "an ordering of distinct category indices", {"integer": True, "nonnegative": True},
    event_dim=1, integer=True, lower=0.0, lower_open=False, notation="orderings of k ≤ K categories", own_axis=True,
    shape="(..., k), k ≤ K",
)


def _integers(label, values, what):
    """Raise unless ``values`` are whole numbers (an integer dtype, or floats that are whole)."""
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values) | (values != np.round(values))
        if bad.any():
            raise SymeligError(f"{first_bad(label, values, bad)} is not allowed: {label} must hold {what}")
    elif values.dtype.kind not in "iu":
        raise SymeligError(f"{label} must hold {what}, got dtype {values.dtype}")


class _Sizes(Constraint):
    """The sizes n_0, …, n_{B−1} ≥ 1 of the blocks of a multi-discrete action, one action space
    for the whole batch (SB3's ``nvec``), adding up to the K logits."""

    def check(self, label, values, *, size, **context):
        if values.ndim != 1:
            raise SymeligError(f"{label} must be one vector of block sizes shared by the batch; got shape {values.shape}")
        _integers(label, values, "integer block sizes")
        bad = values < 1
        if bad.any():
            raise SymeligError(f"{first_bad(label, values, bad)} is not allowed: {label} must hold block sizes ≥ 1")
        if size is not None and values.sum() != size:
            raise SymeligError(f"{label} adds up to {int(values.sum())} but the logits have {size} entries: "
                               f"the blocks' sizes must add up to K")

    def sample(self, rng, shape, *, size, **context):
        """Sizes of ``shape[-1]`` blocks adding up to ``size`` (each ≥ 1)."""
        cuts = np.sort(rng.choice(np.arange(1, size), shape[-1] - 1, replace=False)) if shape[-1] > 1 else np.array([], int)
        return np.diff(np.concatenate([[0], cuts, [size]]))


class _MultiCategory(Constraint):
    """One category per block: x_b ∈ {0, …, n_b − 1}, along an axis of B entries."""

    def check(self, label, values, *, nvec=None, **context):
        if values.ndim < 1:
            raise SymeligError(f"{label} must have one category per block along its last axis; got a scalar")
        _integers(label, values, "integer category indices")
        if nvec is None:
            return
        if values.shape[-1] != nvec.shape[-1]:
            raise SymeligError(f"{label} has {values.shape[-1]} entries along its last axis but nvec has "
                               f"{nvec.shape[-1]} blocks: {label} must hold one category per block")
        bad = (values < 0) | (values >= nvec)
        if bad.any():
            where = tuple(np.argwhere(bad)[0])
            raise SymeligError(f"{first_bad(label, values, bad)} is not allowed: block {where[-1]} has "
                               f"{int(nvec[where[-1]])} categories, so {label} must be in {{0, …, {int(nvec[where[-1]]) - 1}}} there")

    def sample(self, rng, shape, *, nvec, **context):
        return (rng.random(shape) * nvec).astype(np.intp)


# a multi-discrete action: the blocks' sizes (an argument, not differentiated) and one category per block
sizes = _Sizes("sizes", "integer block sizes ≥ 1 adding up to K", {"integer": True, "positive": True},
               event_dim=1, integer=True, notation="ℕ^B", own_axis=True, shape="(B,), shared by the batch")
multi_category = _MultiCategory(
    "multi_category", "one category index per block", {"integer": True, "nonnegative": True},
    event_dim=1, integer=True, lower=0.0, lower_open=False, notation="{0, …, n_b − 1} per block", own_axis=True,
    shape="(..., B)",
)


class _LowerBound(_Real):
    """A truncation's lower bound: any finite real; random ones fall within a few scales of loc
    (where the family's mass is; the tails have tests of their own)."""

    def sample(self, rng, shape, *, loc=None, scale=None, log_scale=None, **context):
        if loc is None:
            return super().sample(rng, shape)
        scale = np.exp(log_scale) if scale is None and log_scale is not None else 1.0 if scale is None else scale
        return loc + scale * rng.normal(-1.0, 1.0, size=shape)


class _AboveLow(_Real):
    """An upper bound: a finite real number above the argument ``low`` (read from the context)."""

    def check(self, label, values, *, low=None, **context):
        super().check(label, values, **context)
        if low is None:
            return
        values, low = np.broadcast_arrays(values, low)
        bad = ~(values > low)
        if bad.any():
            where = tuple(int(w) for w in np.argwhere(bad)[0])
            index = list(where) if where else ""
            raise SymeligError(f"{label}{index} = {values[where].item()} is not above low{index} = {low[where].item()}: "
                               f"{label} must be {self.allowed}")

    def sample(self, rng, shape, *, low=None, scale=None, log_scale=None, **context):
        scale = np.exp(log_scale) if scale is None and log_scale is not None else 1.0 if scale is None else scale
        return (0.0 if low is None else low) + scale * (rng.gamma(2.0, size=shape) + 1.0)


class _InBounds(_Real):
    """A sample in [low, high], the arguments of a truncated family (read from the context)."""

    def check(self, label, values, *, low=None, high=None, **context):
        super().check(label, values, **context)
        if low is None or high is None:
            return
        values, low, high = np.broadcast_arrays(values, low, high)
        bad = ~((values >= low) & (values <= high))
        if bad.any():
            where = tuple(int(w) for w in np.argwhere(bad)[0])
            index = list(where) if where else ""
            raise SymeligError(f"{label}{index} = {values[where].item()} is outside [low, high] = "
                               f"[{low[where].item()}, {high[where].item()}]: {label} must be {self.allowed}")

    def bounds(self, *, low=None, high=None, **context):
        return (-np.inf if low is None else low), (np.inf if high is None else high)

    def sample(self, rng, shape, *, low=None, high=None, **context):
        if low is None or high is None:
            return super().sample(rng, shape)
        return low + rng.uniform(0.02, 0.98, size=shape) * (high - low)


# the bounds of a truncated family: low real, high above it, the sample between them
lower_bound = _LowerBound("real", "a finite real number", {"real": True}, notation="ℝ")
above_low = _AboveLow("above_low", "a finite real number > low", {"real": True}, notation="(low, ∞)")
between_bounds = _InBounds("between_bounds", "a number in [low, high]", {"real": True}, notation="[low, high]")
