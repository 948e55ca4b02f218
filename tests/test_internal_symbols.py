"""The engine's own symbols (indices, K, variables of integration, Mellin arguments, the names
linearity gives statistics) can never be confused with a user's symbol of the same name: they
are of the type ``Internal`` (or SymPy's ``Dummy``), which compares unequal to any ``Symbol``."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from sympy import Dummy, Symbol, simplify

import symelig
from symelig.family import Internal, families
from symelig.parse import check_name
from symelig.errors import SymeligError

PACKAGE = Path(symelig.__file__).parent
# where the engine makes symbols: every module but the emitters (whose Symbols name variables of
# generated code, a namespace of checked identifiers and _-prefixed temporaries)
ENGINE_MODULES = sorted(p for p in PACKAGE.glob("*.py")) + sorted(PACKAGE.glob("families/*.py"))
# the two places that make symbols for the user's own names, on purpose
USER_SYMBOL_FACTORIES = {("family.py", "make_symbols"), ("user.py", "custom"), ("user.py", "_custom")}


def _calls(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    scopes = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            for inner in ast.walk(node):
                scopes.setdefault(id(inner), node.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            yield node, scopes.get(id(node), "<module>")


@pytest.mark.parametrize("path", ENGINE_MODULES, ids=lambda p: p.name)
def test_the_engine_makes_no_plain_symbols(path):
    """A plain Symbol("t") made by the engine would equal a user's parameter named t."""
    for node, scope in _calls(path):
        name = node.func.id
        if name == "Symbol" and (path.name, scope) not in USER_SYMBOL_FACTORIES:
            pytest.fail(f"{path.name}:{node.lineno} ({scope}) makes a plain Symbol; use family.Internal or Dummy")
        if name in ("symbols", "numbered_symbols"):
            classes = [k.value for k in node.keywords if k.arg == "cls"]
            if not classes or not (isinstance(classes[0], ast.Name) and classes[0].id in ("Internal", "Dummy")):
                pytest.fail(f"{path.name}:{node.lineno} ({scope}): {name}() without cls=Internal")


def _internal_names() -> list:
    """The names of the engine's module-level symbols, plus the statistics' S0, S1."""
    names = {"S0", "S1"}
    for path in ENGINE_MODULES:
        if path.name == "__main__.py":
            continue  # importing it runs the command
        module = importlib.import_module("symelig." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
        for value in vars(module).values():
            if isinstance(value, Symbol):
                assert isinstance(value, (Internal, Dummy)), f"{module.__name__} holds the plain symbol {value!r}"
                names.add(value.name)
    usable = []
    for n in sorted(names):
        try:
            usable.append(check_name(n, "parameter"))
        except SymeligError:
            pass  # reserved for display (i, j, K…): a user cannot take it at all
    return usable


def test_internal_names_are_found():
    assert {"t", "s", "m", "epsilon", "S0"} <= set(_internal_names())


def _expectation_families():
    """Families whose Fisher goes through a route that makes symbols, with a positive scalar."""
    out = []
    for name, cls in families().items():
        base = symelig.family.Family
        if cls.standard.__func__ is base.standard.__func__ and cls.moments.__func__ is base.moments.__func__:
            continue
        scalars = [n for n, c in cls.parameters.items() if not c.event_dim and c.name == "positive"]
        if scalars:
            out.append((name, scalars[-1]))
    return out


CASES = _expectation_families()


def _same_second_order(a, b, name):
    rename = {a.symbolic.symbols[name]: b.symbolic.symbols["u"]}
    for kind in ("hessian", "fisher"):
        ours, reference = getattr(a.second_order, kind), getattr(b.second_order, kind)
        assert (ours is None) == (reference is None)
        for key, value in (ours or {}).items():
            other = reference[tuple("u" if k == name else k for k in key)]
            assert simplify(value.xreplace(rename) - other) == 0, (name, kind, key, value, other)


@pytest.mark.parametrize("family, parameter", CASES, ids=[f"{f}-{p}" for f, p in CASES])
def test_a_user_name_equal_to_an_internal_one_changes_nothing(family, parameter):
    """F (and H) with the parameter renamed to an internal name equal those with a neutral
    name: the reported case is student_t --via "scale = t" (F[t, t] was (ν−3)(ν+1)/(ν(ν−2)))."""
    names = _internal_names()
    b = symelig.reparametrize(family, f"{parameter} = u", wrt=["u"], positive=["u"])
    # one internal name per family, rotating, and t (the variable of integration) everywhere
    index = [f for f, _ in CASES].index(family)
    for name in sorted({"t", names[index % len(names)]}):
        a = symelig.reparametrize(family, f"{parameter} = {name}", wrt=[name], positive=[name])
        _same_second_order(a, b, name)


@pytest.mark.parametrize("name", ["m", "t", "S0"])
def test_a_temperature_named_like_the_category_sum_changes_nothing(name):
    """The categorical expectation sums over an internal category m."""
    b = symelig.reparametrize("categorical", "logits = z / u", wrt=["z", "u"], positive=["u"])
    a = symelig.reparametrize("categorical", f"logits = z / {name}", wrt=["z", name], positive=[name])
    _same_second_order(a, b, name)


def _letter_pairs():
    """(family, via parameter, name, letter): a name the family prints with another letter
    (log_scale → s), both usable as new --via names, for a scalar parameter of the family."""
    out = []
    for family, cls in families().items():
        scalars = [(n, c) for n, c in next(iter(cls.parametrizations().values())).parameters.items() if not c.event_dim]
        if not scalars:
            continue
        lhs, constraint = scalars[0]
        base = next(p for p in cls.parametrizations().values() if lhs in p.parameters)
        shown = [*(n for n in base.parameters if n != lhs), *cls.parameters, *cls.arguments, "x"]
        taken = {*shown, *(cls.symbols.get(n, n) for n in shown)}
        for name, letter in cls.symbols.items():
            if name == letter or name in taken or letter in taken:
                continue
            try:
                check_name(name, "parameter"), check_name(letter, "parameter")
            except SymeligError:
                continue
            out.append((family, lhs, constraint.name == "positive", name, letter))
            break
    return out


LETTER_PAIRS = _letter_pairs()


@pytest.mark.parametrize("family, lhs, positive, name, letter", LETTER_PAIRS, ids=[f"{p[0]}-{p[3]}-{p[4]}" for p in LETTER_PAIRS])
def test_two_new_names_one_printed_like_the_other_stay_two_parameters(family, lhs, positive, name, letter):
    """normal --via "loc = log_scale * s": the normal prints log_scale as s, so both names became
    one symbol s (the derivation failed its own verification, or differentiated one name through
    the other).  Each name is its own parameter, with the same result as neutral names."""
    op = "*" if positive else "+"
    flags = {"positive": ["u", "w"]} if positive else {}
    reference = symelig.reparametrize(family, f"{lhs} = u {op} w", wrt=["u", "w"], **flags)
    flags = {"positive": [name, letter]} if positive else {}
    d = symelig.reparametrize(family, f"{lhs} = {name} {op} {letter}", wrt=[name, letter], **flags)
    printed = [str(s) for s in d.symbolic.symbols.values()]
    assert len(set(printed)) == len(printed), printed
    rename = {d.symbolic.symbols[name]: reference.symbolic.symbols["u"], d.symbolic.symbols[letter]: reference.symbolic.symbols["w"]}
    for ours, theirs in ((name, "u"), (letter, "w")):
        assert simplify(d.symbolic.eligibility[ours].xreplace(rename) - reference.symbolic.eligibility[theirs]) == 0
