"""How a family declares itself, and the registry that ``symelig.catalog()`` reads.

A family is one small file in ``symelig/families/``: a :class:`Family` subclass decorated with
:func:`register` that declares, and only declares,

* ``name`` (PyTorch's, lower case) and ``torch`` (the ``torch.distributions`` class, if any);
* ``value``: the constraint of a sample x; ``arguments``: inputs that are not differentiated
  (``total_count``), ``defaults`` the values of those a caller may leave out (tanh_normal's
  bounds −1 and 1, per coordinate); ``parameters``: the canonical parameters, as PyTorch names them;
* ``log_prob``: log p(x | θ) in the canonical parameters, written with SymPy;
* ``symbols``: the letter each name gets in formulas (``probs`` → p, ``loc`` → μ);
* one method per parametrization, decorated with :func:`parametrization` naming the
  differentiated parameters and their constraints, returning how the canonical parameters are
  computed from them (``{"scale": exp(log_scale)}``; ``{}`` for the canonical one itself);
* ``identities``: facts that hold on the support (the counts sum to total_count);
* what the engine needs to take expectations over x (for the Fisher information), where the
  Hessian depends on x: ``moments``, the expectations of the statistics it is affine in (as
  PyTorch declares ``mean``), or ``standard``, x written through a variable t whose Mellin
  transform E[t^s] is known (x = μ + σ·ε·√(2t) with t ~ Gamma(½, 1) for the normal).

Vector parameters have a symbolic number of categories ``K``: they are ``IndexedBase`` objects,
sums run over a bound index from 0 to K − 1, a vector substitution is a ``Lambda`` of the index,
and the eligibility is derived for the component ``j``.  Nothing here differentiates or
prints; that is the engine's and the emitters'.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import threading
from dataclasses import dataclass
from typing import Callable

from sympy import IndexedBase, Symbol

from .constraints import Constraint
from .errors import SymeligError, did_you_mean

class Internal(Symbol):
    """A symbol the engine makes for its own use (an index, K, a variable of integration).

    It is a type of its own, so it never equals a user's symbol of the same name and
    assumptions: SymPy compares and hashes symbols by type, name and assumptions.  A user who
    names a parameter ``t`` gets ``Symbol("t")``, which the expectation's ``Internal("t")``
    cannot capture.  Not ``Dummy``: a Dummy prints as ``_t`` and sorts by creation order, and
    these letters appear in printed formulas (Σ_i, δ_jl, K), which must read the same each run.
    """


K = Internal("K", integer=True, positive=True)     # number of categories
i = Internal("i", integer=True, nonnegative=True)  # bound index of sums over categories
k = Internal("k", integer=True, nonnegative=True)  # a second bound index, for nested sums
j = Internal("j", integer=True, nonnegative=True)  # the component a vector eligibility is for
l = Internal("l", integer=True, nonnegative=True)  # the second component of a vector Hessian H_jl
n_placed = Internal("k", integer=True, positive=True)  # the length k ≤ K of an ordering (Plackett–Luce)
r = Internal("r", integer=True, nonnegative=True)  # the step (rank) of an ordering: x_r is placed r-th
q = Internal("q", integer=True, nonnegative=True)  # a step before r: x_q is already placed at step r
n_blocks = Internal("B", integer=True, positive=True)  # the number of blocks of a multi-discrete action
b = Internal("b", integer=True, nonnegative=True)  # a block: categories o_b, …, o_b + n_b − 1
c = Internal("c", integer=True, nonnegative=True)  # a block before b (o_b = Σ_{c<b} n_c)
t = Internal("t", positive=True)                   # the base variable of Family.standard
s = Internal("s")                                  # the argument of a Mellin transform E[t^s]


def call_with(function: Callable, symbols: dict):
    """Call ``function`` with the entries of ``symbols`` its signature names."""
    wanted = inspect.signature(function).parameters
    return function(**{n: symbols[n] for n in wanted})


@dataclass(frozen=True)
class Parametrization:
    """One way to parametrize a family: the differentiated parameters, and how the canonical
    parameters are computed from them."""

    name: str
    parameters: dict              # name -> Constraint, in the order of the outputs
    build_substitution: Callable  # (**symbols) -> {canonical name: expression or Lambda}
    doc: str
    natural: bool = False         # θ is the natural parameter of an exponential family
    command: str = ""             # how to regenerate it, where not `symelig export FAMILY --param NAME`

    def substitution(self, symbols: dict) -> dict:
        return call_with(self.build_substitution, symbols)


def parametrization(natural: bool = False, **parameters: Constraint):
    """Mark a Family method as a parametrization differentiated w.r.t. ``parameters``; the
    method returns {canonical parameter: its expression in ``parameters``}."""

    def wrap(method):
        return Parametrization(method.__name__, parameters, method, inspect.getdoc(method) or "", natural)

    return wrap


def positive_parametrizations(name: str, positive: dict, others: dict | None = None) -> tuple:
    """The three ways networks output positive parameters: as they are, as logs, through softplus.

    ``positive`` maps each positive canonical parameter to its constraint; ``others`` are the
    parameters that stay as they are.  Returns the parametrizations ``name``, ``log_<name>``
    (θ = exp(log_θ)) and ``softplus_<name>`` (θ = softplus(raw_θ)).
    """
    from sympy import Lambda, exp

    from . import constraints
    from .functions import softplus

    others = others or {}
    listed = ", ".join(positive)

    def variant(parametrization_name, prefix, transform, doc):
        renamed = {p: f"{prefix}_{p}" for p in positive}

        def substitution(**symbols):
            return {
                p: Lambda(i, transform(symbols[new][i])) if positive[p].event_dim else transform(symbols[new])
                for p, new in renamed.items()
            }

        # call_with reads the signature to know which symbols the substitution needs
        substitution.__signature__ = inspect.Signature(
            [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in renamed.values()]
        )
        real = {new: constraints.real_vector if positive[p].event_dim else constraints.real for p, new in renamed.items()}
        return Parametrization(parametrization_name, {**others, **real}, substitution, doc)

    return (
        Parametrization(name, {**others, **positive}, lambda: {}, f"The parameters as PyTorch takes them ({listed} > 0)."),
        variant(f"log_{name}", "log", exp, f"Log-parametrized: {_mapped('exp', 'log', positive)}, for unconstrained network outputs."),
        variant(f"softplus_{name}", "raw", softplus, f"Softplus-parametrized: {_mapped('softplus', 'raw', positive)}, for raw network outputs."),
    )


def _mapped(function: str, prefix: str, positive: dict) -> str:
    return ", ".join(f"{p} = {function}({prefix}_{p})" for p in positive)


class Family:
    name: str = ""
    torch: str | None = None
    torch_names: dict = {}     # canonical name -> torch.distributions keyword, where they differ
    value: Constraint
    arguments: dict = {}
    defaults: dict = {}        # argument -> the number it is (in every coordinate) when not given
    parameters: dict = {}      # canonical parameters -> Constraint
    symbols: dict = {}

    @staticmethod
    def log_prob(**symbols):
        """log p(x | θ) in the canonical parameters (a SymPy expression)."""
        raise NotImplementedError

    @classmethod
    def parametrizations(cls) -> dict:
        return {p.name: p for p in vars(cls).values() if isinstance(p, Parametrization)}

    @classmethod
    def summary(cls) -> str:
        return (inspect.getdoc(cls) or "").split("\n\n")[0]

    @classmethod
    def identities(cls, **symbols) -> dict:
        """Equalities that hold for every x in the support, as {expression: replacement}."""
        return {}

    @classmethod
    def moments(cls, **symbols) -> dict:
        """{statistic of x: its expectation} in the canonical parameters, e.g. {x: λ} for the
        Poisson; a vector statistic is written at the bound index i ({x[i]: n·π_i})."""
        return {}

    @classmethod
    def abbreviations(cls, **symbols) -> dict:
        """{letter: expression in the canonical parameters} that a paper names to keep printed
        formulas short (the truncated normal's α = (low − μ)/σ); printing only, the engine and
        the kernels never see the letters."""
        return {}

    @classmethod
    def log_jacobian(cls, **symbols):
        """Where x is a fixed map of a base variable (tanh_normal's action a of u): the
        log-Jacobian term of log p, which does not depend on θ; ``explain`` shows its zero
        derivative as a step of its own.  None for the other families."""
        return None

    @classmethod
    def standard(cls, **symbols):
        """A :class:`Standard` representation of x, or None."""
        return None

    @classmethod
    def make_symbols(cls, parametrization: Parametrization) -> dict:
        """SymPy symbols for x, the arguments, the canonical and the parametrization's parameters."""
        constraints = {"x": cls.value, **cls.arguments, **cls.parameters, **parametrization.parameters}
        letters = _letters(cls, list(constraints))
        made = {}
        for name, constraint in constraints.items():
            kind = IndexedBase if constraint.event_dim else Symbol
            made[name] = kind(letters[name], **constraint.assumptions)
        return made


def _letters(cls, names: list) -> dict:
    """{name: the letter it is printed and derived with}: the family's letter (loc → mu) where
    no other name of the derivation is printed the same, else the name itself.

    Two names printed alike would be one symbol (or two that read as one): a reparametrization
    whose new names are ``log_scale`` and ``s`` would give both the normal's letter s for
    log_scale and differentiate one through the other.  The family's own names (its sample,
    arguments and parametrizations' parameters) keep their letters first."""
    own = {"x", *cls.arguments, *cls.parameters, *(n for p in cls.parametrizations().values() for n in p.parameters)}
    wanted = {n: cls.symbols.get(n, n) for n in names}
    literal = {n for n in names if wanted[n] == n}  # printed as typed: nothing else may take it
    letters, used = {}, set()
    for name in sorted(names, key=lambda n: (n not in own, names.index(n))):
        letter = wanted[name]
        if letter in used or (letter != name and letter in literal):
            letter = name
        if letter in used:
            raise SymeligError(f"the names {', '.join(n for n in names if letters.get(n) == letter or n == name)} "
                               f"would be printed alike ({letter}); choose another name")
        letters[name] = letter
        used.add(letter)
    return letters


@dataclass(frozen=True)
class Standard:
    """x = ``x`` (an expression in the base variable ``t`` > 0 and the canonical parameters),
    where t has the known Mellin transform E[t^s] = ``mellin(s)``; with ``symmetric`` the
    expression also holds the sign ε = ±1 (each with probability ½, independent of t).
    Then E[t^a (log t)^b] = dᵇ/dsᵇ E[t^s] at s = a."""

    x: object
    mellin: object      # Lambda(s, E[t^s])
    law: str            # t's distribution in words, for the notes
    symmetric: bool = False


EPSILON = Internal("epsilon")  # the sign of a symmetric Standard
mgf_variable = Internal("u")  # the variable of a moment generating function (Family.moments)


def moments_from_mgf(x, mgf, up_to: int, only_even: bool = False, mean=None) -> dict:
    """{x^k: E[x^k]} for k = 1 … ``up_to``, the k-th derivatives at 0 of the moment generating
    function ``mgf`` (a Lambda of one variable): a family declares its MGF, SymPy derives the
    moments (the polynomials of degree 2 to 4 that the KL-estimator audit averages).  ``mean``,
    E[x] as the family writes it ((1 − p)/p, not factor's −(p − 1)/p), must agree with the MGF's."""
    from sympy import cancel, diff, factor

    u = mgf_variable
    expression = mgf(u)
    out = {}
    for k in range(1, up_to + 1):
        if only_even and k % 2:
            continue
        out[x**k] = factor(diff(expression, u, k).subs(u, 0))
    if mean is not None:
        if cancel(out[x] - mean) != 0:
            raise ValueError(f"the declared mean {mean} is not the MGF's {out[x]}")
        out[x] = mean
    return out


@dataclass(frozen=True)
class Entry:
    """One (family, parametrization) pair of the catalog."""

    family: str
    param: str
    parameters: tuple
    arguments: tuple
    torch: str | None
    summary: str
    support: str = ""      # the set x lives in
    builtin: bool = True   # shipped with symelig (False: registered by user code)


_REGISTRY: dict = {}


def register(cls):
    """Class decorator: add a family to the catalog (built-in families and a lab's own)."""
    if not cls.__module__.startswith(f"{__package__}.families"):
        _load_builtin_families()  # a user family must not shadow, or be shadowed by, a built-in one
    with _REGISTERING:  # check and insert as one step when labs register from several threads
        if not cls.name or cls.name in _REGISTRY:
            raise SymeligError(f"family name {cls.name!r} is empty or already registered")
        _REGISTRY[cls.name] = cls
    return cls


_BUILTINS_LOADED = []
# Held while the built-in modules are imported.  Reentrant: importing a family module runs
# @register, and a lab's module may import another.  @register itself must not wait for it: a
# thread that imports one family module directly (holding that module's import lock) while
# another loads the catalog (holding this lock, then waiting for that module) would deadlock.
_LOADING = threading.RLock()
# Held only for reading or changing _REGISTRY, never while importing.
_REGISTERING = threading.Lock()


def _load_builtin_families() -> None:
    # Importing each module of symelig.families runs its @register: a new family is a new file.
    # The flag is set only after every import has finished, under a lock: a second thread that
    # arrives mid-import waits instead of reading a half-filled registry.
    if _BUILTINS_LOADED:
        return
    with _LOADING:
        if _BUILTINS_LOADED:
            return
        from . import families

        for module in pkgutil.iter_modules(families.__path__):
            importlib.import_module(f"{families.__name__}.{module.name}")
        _BUILTINS_LOADED.append(True)


def families() -> dict:
    _load_builtin_families()
    with _REGISTERING:
        return dict(sorted(_REGISTRY.items()))


def catalog() -> list:
    """Every (family, parametrization) pair symelig can derive, sorted by family."""
    return [
        Entry(
            name, p.name, tuple(p.parameters), tuple(cls.arguments), cls.torch, p.doc.split("\n\n")[0],
            cls.value.notation or cls.value.allowed, cls.__module__.startswith(f"{__package__}.families"),
        )
        for name, cls in families().items()
        for p in cls.parametrizations().values()
    ]


def lookup(family: str, param: str | None):
    """The family class and parametrization, or a SymeligError listing what exists."""
    known = families()
    if family not in known:
        from .matrix import FAMILIES as matrix_families  # derived in matrix form, outside this registry

        if family in matrix_families:
            raise SymeligError(f"{family} is derived in matrix form (symelig.matrix) and works with symelig derive, eval, "
                               "export and explain (symelig.derive in Python); this command takes the other families only")
        everything = sorted([*known, *matrix_families])
        hint = did_you_mean(str(family), everything)
        raise SymeligError(f"unknown family {family!r};{hint} choose one of: {', '.join(everything)}")
    cls = known[family]
    params = cls.parametrizations()
    if param is None:
        param = next(iter(params))
    if param not in params:
        hint = did_you_mean(str(param), params)
        raise SymeligError(f"unknown parametrization {param!r} of {family};{hint} choose one of: {', '.join(params)}")
    return cls, params[param]
