"""symelig.dask checks values as the numpy API does (issue 12, item 4), over the whole catalog.

For every entry, one bad value is planted at a row in a later chunk: a sample outside the
support (below or above its declared bounds, a non-integer where integers are declared, a
non-finite number), or a bad parameter value (non-finite, outside its bounds).  The numpy API
refuses the same arrays; the Dask arrays must refuse them on compute() with one line that names
the argument and the row in the whole batch (not in the chunk).
"""
from __future__ import annotations

import numpy as np
import pytest

import symelig
import symelig.dask  # noqa: F401  (the submodule)
from symelig import SymeligError, constraints
from conftest import random_arguments

da = pytest.importorskip("dask.array")

ROWS, CHUNK, BAD_ROW = 40, 8, 29  # the bad row lies in the fourth chunk, at position 5 within it


def _bad_values(constraint, values: np.ndarray, args: dict) -> list:
    """Values outside ``constraint`` for one element (one row, or one component of a row)."""
    out = []
    if values.dtype.kind == "f" or not constraint.integer:
        out.append(np.nan)
    if constraint is constraints.category:
        out += [-1, values.shape[-1] if values.ndim > 1 else int(np.max(values)) + 100]
    if constraint.lower > -np.inf:
        out.append(constraint.lower - 1)
    if constraint.upper < np.inf:
        out.append(constraint.upper + 1)
    if constraint is constraints.squashed:  # an action above high, below low, and at the bound itself
        out += [float(np.max(args["high"])) + 1, float(np.min(args["low"])) - 1, float(args["high"][BAD_ROW, 1])]
    if constraint is constraints.up_to_total_count:
        out.append(int(np.max(args["total_count"])) + 1)
    if constraint.integer:
        out.append((0 if constraint.lower == -np.inf else constraint.lower) + 0.5)
    return out


def _cases(d, rng):
    """(argument, planted value, args) for every argument and bad value of an entry."""
    base = random_arguments(d, rng, batch=(ROWS,), size=4)
    family = d.symbolic.family
    for name, constraint in {"x": family.value, **d.symbolic.parametrization.parameters}.items():
        for bad in _bad_values(constraint, base[name], base):
            args = {n: np.array(v, copy=True) for n, v in base.items()}
            value = args[name]
            if isinstance(bad, float) and (not np.isfinite(bad) or bad != int(bad)) and value.dtype.kind != "f":
                value = args[name] = value.astype(float)
            if constraint.event_dim:
                value[BAD_ROW, 1] = bad
            else:
                value[BAD_ROW] = bad
            yield name, bad, args


def _lazy(args: dict, d) -> dict:
    out = {}
    for n, v in args.items():
        event = d.symbolic.constraints[n].event_dim
        out[n] = da.from_array(v, chunks=(CHUNK,) + v.shape[1:]) if np.ndim(v) > event else v
    return out


def test_dask_refuses_what_the_numpy_api_refuses(entry):
    d = symelig.derive(entry.family, entry.param)
    rng = np.random.default_rng(12)
    count = 0
    for name, bad, args in _cases(d, rng):
        with pytest.raises(SymeligError):
            d.eligibility(**args)
        lazy = _lazy(args, d)
        for compute in (lambda: symelig.dask.eligibility(d, **lazy)[d.parameters[0]].compute(),
                        lambda: symelig.dask.log_prob(d, **lazy).compute()):
            with pytest.raises(SymeligError) as err:
                compute()
            message = str(err.value)
            assert "\n" not in message
            # the argument and its row in the whole batch (29), not in the chunk (5)
            assert message.startswith(f"{name}[{BAD_ROW}"), (name, bad, message)
        count += 1
    assert count >= 2


def _same_outcome(numpy_result, dask_result):
    """The numpy API's value, or its one-line refusal, from the Dask arrays too."""
    try:
        expected = numpy_result()
    except SymeligError:  # a random draw too extreme for the dtype (gumbel's exp(N(0, 3)) scales)
        with pytest.raises(SymeligError):
            dask_result()
        return
    got = dask_result()
    for n in expected if isinstance(expected, dict) else [None]:
        np.testing.assert_allclose(got[n] if n else got, expected[n] if n else expected, rtol=1e-12)


def test_valid_data_still_computes_and_validate_false_skips_the_checks(entry):
    d = symelig.derive(entry.family, entry.param)
    args = random_arguments(d, np.random.default_rng(3), batch=(ROWS,), size=4)
    lazy = _lazy(args, d)
    _same_outcome(lambda: d.eligibility(**args), lambda: {n: v.compute() for n, v in symelig.dask.eligibility(d, **lazy).items()})
    _same_outcome(lambda: d.log_prob(**args), lambda: symelig.dask.log_prob(d, **lazy).compute())
    _same_outcome(lambda: d.eligibility(validate=False, **args),
                  lambda: {n: v.compute() for n, v in symelig.dask.eligibility(d, validate=False, **lazy).items()})
    name, _, bad = next(_cases(d, np.random.default_rng(3)))
    symelig.dask.log_prob(d, validate=False, **_lazy(bad, d)).compute()  # no check, whatever comes out


def test_dask_names_the_global_index_on_two_batch_axes_and_in_shared_parameters():
    d = symelig.derive("normal", "scale")
    rng = np.random.default_rng(0)
    x, scale = rng.normal(size=(6, 50)), rng.uniform(0.5, 2, size=(6, 50))
    scale[4, 33] = -1.0
    with pytest.raises(SymeligError, match=r"^scale\[4, 33\] = -1.0 is not allowed: scale must be a finite number > 0$"):
        symelig.dask.eligibility(d, da.from_array(x, chunks=(2, 10)), loc=0.0, scale=da.from_array(scale, chunks=(2, 10)))["scale"].compute()
    # a parameter shared by every row (no batch axis of its own) keeps its own index
    shared = np.ones(50)
    shared[7] = np.inf
    with pytest.raises(SymeligError, match=r"^scale\[7\] = inf is not allowed"):
        symelig.dask.log_prob(d, da.from_array(x, chunks=(2, 10)), loc=0.0, scale=shared).compute()


def test_dask_categories_and_counts_are_checked_against_the_other_arguments():
    rng = np.random.default_rng(1)
    d = symelig.derive("categorical", "logits")
    x = rng.integers(0, 5, size=300)
    x[211] = 5  # one past K
    with pytest.raises(SymeligError, match=r"^x\[211\] = 5 is not allowed: x must be a category index in \{0, …, 4\}"):
        symelig.dask.eligibility(d, da.from_array(x, chunks=64), logits=rng.normal(size=5))["logits"].compute()
    m = symelig.derive("multinomial", "logits")
    counts = rng.multinomial(5, np.full(3, 1 / 3), size=300)
    counts[150] = [6, 0, 0]
    with pytest.raises(SymeligError, match=r"^x\[150\] sums to 6 along its last axis but total_count is 5"):
        symelig.dask.eligibility(m, da.from_array(counts, chunks=(64, 3)), total_count=da.full(300, 5, chunks=64),
                                 logits=np.zeros(3))["logits"].compute()


def test_dask_shapes_and_dtypes_are_checked_when_the_graph_is_built():
    d = symelig.derive("categorical", "probs")
    x = da.zeros(10, dtype=int, chunks=5)
    for kwargs, message in [
        (dict(probs=da.ones((10, 3), chunks=5), x=da.zeros(10, dtype="complex128", chunks=5)), "numeric"),
        (dict(probs=da.ones((10, 0), chunks=5), x=x), "non-empty category axis"),
        (dict(probs=da.ones((4, 3), chunks=2), x=x), "do not broadcast"),
    ]:
        with pytest.raises(SymeligError, match=message):
            symelig.dask.eligibility(d, **kwargs)


def test_dask_non_finite_eligibility_is_an_error_with_its_global_row():
    d = symelig.derive("categorical", "probs")
    probs = np.tile([0.5, 0.5, 0.0], (40, 1))
    x = np.zeros(40, dtype=int)
    x[33] = 2  # a category of probability 0
    with pytest.raises(SymeligError, match=r"the sample x at batch index \[33\] has probability 0"):
        symelig.dask.eligibility(d, da.from_array(x, chunks=8), probs=da.from_array(probs, chunks=(8, 3)))["probs"].compute()


def test_dask_checks_run_on_distributed_workers():
    distributed = pytest.importorskip("dask.distributed")
    d = symelig.derive("categorical", "probs")
    x = np.zeros(400, dtype=int)
    x[345] = -3
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        lazy = symelig.dask.eligibility(d, da.from_array(x, chunks=100), probs=np.full(3, 1 / 3))
        with pytest.raises(SymeligError, match=r"^x\[345\] = -3 is not allowed"):
            lazy["probs"].compute()
