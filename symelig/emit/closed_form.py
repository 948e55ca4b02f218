"""Vectorized numpy functions for closed forms in θ alone (entropy, KL and their gradients).

These expressions have no sample, so the eligibility kernels' machinery (the scatter at x, the
row-wise buffers) does not apply; what they share with them is the index convention of the
design notes: a vector parameter's bound index i and free index j are both the last axis, so
``z[i]`` and ``z[j]`` print as ``z``; a Sum over i is a sum over that axis (kept, so that it
broadcasts against a component j); softmax and log-sum-exp are computed max-shifted.  SymPy's
``lambdify`` does the rest with this printer: no Python loop over categories.
"""
from __future__ import annotations

import numpy as np
from scipy import special
from sympy import IndexedBase, lambdify
from sympy.printing.numpy import SciPyPrinter

from ..family import K


def _softmax(u):
    e = np.exp(u - np.max(u, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def _logsumexp(u):
    top = np.max(u, axis=-1, keepdims=True)
    return top + np.log(np.sum(np.exp(u - top), axis=-1, keepdims=True))


def _log_softplus(u):
    # far below 0 softplus(u) = e^u − e^{2u}/2 + … underflows; its log is u − e^u/2 + O(e^{2u})
    u = np.asarray(u)
    with np.errstate(divide="ignore"):
        return np.where(u < -30, u - np.exp(u) / 2, np.log(np.logaddexp(0, u)))


def _log_bessel_i0(u):
    return np.log(special.ive(0, u)) + np.abs(u)


def _bessel_i1_i0(u):
    return special.ive(1, u) / special.ive(0, u)


def _runtime_helpers(*names) -> dict:
    """The kernels' own helpers (symelig.emit.runtime), for the functions they alone evaluate
    stably: a truncated normal's log(Φ(β) − Φ(α)) and φ(α)/(Φ(β) − Φ(α)) in the tails."""
    from . import runtime

    scope = runtime.namespace("numpy", names)
    return {n: scope[n] for n in names}


HELPERS = {"_softmax": _softmax, "_logsumexp": _logsumexp, "_log_softplus": _log_softplus,
           "_log_bessel_i0": _log_bessel_i0, "_bessel_i1_i0": _bessel_i1_i0,
           **_runtime_helpers("_log_ndtr_difference", "_normal_pdf_over_mass")}


class _AxisPrinter(SciPyPrinter):
    """SciPy's printer with the category index mapped onto the last axis."""

    def _print_Indexed(self, expr):
        return self._print(expr.base)

    def _print_IndexedBase(self, expr):
        return self._print(expr.label)

    def _print_Sum(self, expr):
        return f"numpy.sum({self._print(expr.function)}, axis=-1, keepdims=True)"

    def _print_Softmax(self, expr):
        return f"_softmax({self._print(expr.body)})"

    def _print_LogSumExp(self, expr):
        return f"_logsumexp({self._print(expr.body)})"

    def _call(self, name, expr):
        return f"{name}({', '.join(self._print(a) for a in expr.args)})"

    def _print_sigmoid(self, expr):
        return self._call("scipy.special.expit", expr)

    def _print_softplus(self, expr):
        return f"numpy.logaddexp(0, {self._print(expr.args[0])})"

    def _print_log_softplus(self, expr):
        return self._call("_log_softplus", expr)

    def _print_sigmoid_over_softplus(self, expr):
        u = self._print(expr.args[0])
        return f"(scipy.special.expit({u}) / numpy.logaddexp(0, {u}))"

    def _print_bessel_i1_i0(self, expr):
        return self._call("_bessel_i1_i0", expr)

    def _print_log_bessel_i0(self, expr):
        return self._call("_log_bessel_i0", expr)

    def _print_log_ndtr_difference(self, expr):
        return self._call("_log_ndtr_difference", expr)

    def _print_normal_pdf_over_mass(self, expr):
        return self._call("_normal_pdf_over_mass", expr)

    def _print_xlogy(self, expr):
        return self._call("scipy.special.xlogy", expr)

    def _print_logfactorial(self, expr):
        return f"scipy.special.gammaln({self._print(expr.args[0])} + 1)"


def function(expr, arguments: list):
    """f(*arrays, size) evaluating ``expr``; ``arguments`` are Symbols or IndexedBases in the
    order the arrays are passed, ``size`` the number of categories (K)."""
    f = lambdify([*arguments, K], expr, modules=[HELPERS, "scipy", "numpy"], printer=_AxisPrinter)
    vectors = [isinstance(a, IndexedBase) for a in arguments]

    def evaluate(*arrays):
        sizes = [np.shape(a)[-1] for a, v in zip(arrays, vectors) if v]
        return f(*arrays, sizes[0] if sizes else 0)

    return evaluate
