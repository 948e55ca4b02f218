"""The derivation for a concrete number of categories: the full table of components.

Independent of the symbolic-K path on purpose: the family's log-likelihood is written out for
K = N (every sum expanded into N terms), differentiated by SymPy component by component and
simplified.  A test checks that the symbolic result, evaluated at K = N, agrees entry by entry.
For a categorical the table has a row per sample value x = 0..N−1; for counts x_0..x_{N−1}
stay symbols and the table is a single row.
"""
from __future__ import annotations

from dataclasses import dataclass

from sympy import Add, Dummy, Indexed, IndexedBase, Pow, collect, diff, expand_mul, factor_terms

from .errors import SymeligError
from .family import K

MAX_K = 64


@dataclass(frozen=True)
class Table:
    size: int
    rows: tuple          # sample labels: (0, 1, …) for a categorical, ("x",) for counts
    columns: dict        # parameter name -> tuple of wrt symbols θ_0..θ_{N−1}
    entries: dict        # (row, parameter name) -> tuple of N expressions
    log_prob: dict       # row -> expanded log-likelihood


def expand(symbolic, size: int) -> Table:
    if not isinstance(size, int) or not 1 <= size <= MAX_K:
        raise SymeligError(f"--k must be an integer from 1 to {MAX_K}; got {size!r}")
    s = symbolic.symbols
    log_p = symbolic.parametrized_log_prob.subs(K, size).doit()
    by_index = symbolic.sample_index is not None
    rows = tuple(range(size)) if by_index else ("x",)
    columns = {
        n: tuple(s[n][m] for m in range(size)) if isinstance(s[n], IndexedBase) else (s[n],)
        for n in symbolic.parameters
    }
    # Differentiate once per component with the sample x still a symbol (∂p_x/∂p_m = δ_mx),
    # then set x to each row: N derivatives instead of N², the same table.
    derivatives = {n: [diff(log_p, w) for w in wrt] for n, wrt in columns.items()}
    entries, log_probs = {}, {}
    for row in rows:
        log_probs[row] = log_p.xreplace({s["x"]: row}) if by_index else log_p
        for n in columns:
            entries[(row, n)] = tuple(_tidy(e.xreplace({s["x"]: row}) if by_index else e, size) for e in derivatives[n])
    return Table(size, rows, columns, entries, log_probs)


def _tidy(expr, size: int):
    """Group the terms over each shared denominator, as one writes the components by hand.  A sum
    of all K components (p₀ + … + p_{K−1}) is held as one symbol meanwhile, so that it is never
    multiplied out: 1/p₀ − 1/Σp stays so, not (p₁ + p₂ + p₃)/(p₀² + p₀p₁ + …)."""
    held = {a: Dummy("total") for a in expr.atoms(Add) if _all_components(a, size)}
    expr = expand_mul(expr.xreplace(held))
    denominators = sorted({a for a in expr.atoms(Pow) if a.exp == -1 and (a.base.is_Add or a.base in held.values())}, key=str)
    expr = collect(expr, denominators, func=factor_terms) if denominators else expr
    return expr.xreplace({v: k for k, v in held.items()})


def _all_components(expr, size: int) -> bool:
    """Whether ``expr`` is v₀ + v₁ + … + v_{K−1} for one vector v."""
    bases = {t.base for t in expr.args if isinstance(t, Indexed)}
    return (size > 1 and len(bases) == 1 and len(expr.args) == size
            and set(expr.args) == {next(iter(bases))[m] for m in range(size)})
