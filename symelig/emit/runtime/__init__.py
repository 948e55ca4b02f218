"""The helpers that generated kernels call, as real Python modules, each written once.

* :mod:`.special`: the stable special functions (sigmoid, softplus and its logarithm, Loader's
  deviance, Stirling's remainder, ψ-differences, …), against an array namespace ``xp``;
* :mod:`.numpy_kernels`: the numpy kernels' plumbing, and faster numpy forms of a few of them;
* :mod:`.array_api`: the array-API kernels' plumbing (namespace, device, dtype, scatters);
* :mod:`.numba_kernels`: the numba kernels' scalar helpers and their wrappers' Python helpers.

A generated module stands alone (it imports numpy, never symelig), so the emitters copy the
source of each helper it calls into it: :func:`sources` gives that text for one dialect, with
every helper the asked-for ones call, found in their code (a name one uses that another
defines), not in a hand-kept table.  The dialects:

* ``"xp"``: :mod:`.array_api`, then :mod:`.special`, as written;
* ``"numpy"``: :mod:`.numpy_kernels`, then :mod:`.special` with the namespace bound to numpy
  (:func:`for_numpy`: ``_sigmoid(xp, z)`` is written ``_sigmoid(z)``, ``xp.log`` ``np.log``), so
  that numpy kernels call helpers without a namespace argument;
* ``"numba"``: :mod:`.numba_kernels`, with the import statements its helpers need (:func:`imports`).

Where both modules of a dialect define a name, the first wins.
"""
from __future__ import annotations

import ast
import io
import tokenize
from functools import lru_cache
from pathlib import Path

_DIALECTS = {"numpy": ("numpy_kernels", "special"), "xp": ("array_api", "special"), "numba": ("numba_kernels",)}


class _Definition:
    """A top-level function or assignment of a runtime module: its source, the names it uses,
    its place in the module."""

    def __init__(self, source: str, uses: frozenset, position: int):
        self.source, self.uses, self.position = source, uses, position


@lru_cache(maxsize=None)
def _module(module: str) -> tuple:
    """({name: definition}, {name an import binds: that import's source}) of the runtime module
    ``module``, read from its file (the emitters need its text, not the module: no import).  A
    function registered on another by its decorator (numba's ``@overload(_exp)``) is part of
    that one's definition."""
    text = (Path(__file__).parent / f"{module}.py").read_text(encoding="utf-8")
    lines = text.splitlines()
    found, imports = {}, {}
    for position, node in enumerate(ast.parse(text).body):
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        source = "\n".join(lines[first - 1:node.end_lineno])
        uses = frozenset(n.id for n in ast.walk(node) if isinstance(n, ast.Name))
        if isinstance(node, (ast.Import, ast.ImportFrom)) and getattr(node, "module", None) != "__future__":
            imports.update({(alias.asname or alias.name).split(".")[0]: source for alias in node.names})
        elif isinstance(node, ast.FunctionDef):
            registers = [a.id for d in node.decorator_list if isinstance(d, ast.Call) for a in d.args
                         if isinstance(a, ast.Name) and a.id in found]
            if registers:
                host = found[registers[0]]
                found[registers[0]] = _Definition(f"{host.source}\n\n\n{source}", host.uses | uses, host.position)
            else:
                found[node.name] = _Definition(source, uses - {node.name}, position)
        elif isinstance(node, ast.Assign):
            found.update({t.id: _Definition(source, uses, position) for t in node.targets if isinstance(t, ast.Name)})
    return found, imports


@lru_cache(maxsize=None)
def _library(dialect: str) -> dict:
    """{name: definition} of every helper of ``dialect``."""
    library = {}
    for module in reversed(_DIALECTS[dialect]):  # the first module's definitions win
        for name, definition in _module(module)[0].items():
            if dialect == "numpy" and module == "special":
                definition = _Definition(for_numpy(definition.source), definition.uses, definition.position)
            library[name] = definition
    return library


def closure(dialect: str, names) -> set:
    """``names`` with every helper of ``dialect`` they use, directly or not."""
    library = _library(dialect)
    unknown = set(names) - set(library)
    if unknown:
        raise KeyError(f"no {dialect} helper {sorted(unknown)}")
    done, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name not in done:
            done.add(name)
            todo += [n for n in library[name].uses if n in library]
    return done


def sources(dialect: str, names) -> list:
    """The sources of the helpers ``names`` of ``dialect`` and of those they use: by name (the
    array dialects), or in the module's order (numba's, whose registrations run in order)."""
    library = _library(dialect)
    used = closure(dialect, names)
    key = (lambda n: (library[n].position, n)) if dialect == "numba" else None
    return list(dict.fromkeys(library[name].source for name in sorted(used, key=key)))


def names(dialect: str) -> frozenset:
    """The names of every helper of ``dialect``."""
    return frozenset(_library(dialect))


def source(dialect: str, name: str) -> str:
    """The source of the one helper ``name`` of ``dialect`` (without what it uses)."""
    return _library(dialect)[name].source


def imports(dialect: str, names) -> list:
    """The import statements of the runtime modules that the helpers ``names`` (and those they
    use) need, in the modules' order."""
    library = _library(dialect)
    needed = set().union(*(library[n].uses for n in closure(dialect, names)))
    lines = []
    for module in _DIALECTS[dialect]:
        lines += [line for name, line in _module(module)[1].items() if name in needed]
    return list(dict.fromkeys(lines))


def namespace(dialect: str, names) -> dict:
    """The helpers ``names`` (and those they call) run from the very text the emitters write, for
    tests: {name: function}."""
    import numpy

    scope = {"np": numpy}
    if dialect == "xp":
        from array_api_compat import array_namespace, device

        scope.update(array_namespace=array_namespace, device=device)
    exec(compile("\n\n\n".join(sources(dialect, names)), f"<symelig {dialect} helpers>", "exec"), scope)  # noqa: S102 -- this package's own source
    return scope


def for_numpy(source: str) -> str:
    """``source``, a function of :mod:`.special`, with its namespace bound to numpy: the
    parameter ``xp`` and the ``xp`` argument of the helpers it calls dropped, ``xp.f`` written
    ``np.f``.  (By tokens: names inside strings and comments are left alone.)"""
    tokens = [t for t in tokenize.generate_tokens(io.StringIO(source).readline)]
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))

    def offset(position):
        row, column = position
        return starts[row - 1] + column

    edits = []
    for i, t in enumerate(tokens):
        if t.type != tokenize.NAME or t.string != "xp":
            continue
        before, after = tokens[i - 1].string, tokens[i + 1].string
        if before == "(" and after == ",":  # f(xp, a) → f(a); def f(xp, a) → def f(a)
            edits.append((offset(t.start), offset(tokens[i + 2].start), ""))
        elif before == "(" and after == ")":  # f(xp) → f()
            edits.append((offset(t.start), offset(t.end), ""))
        else:
            edits.append((offset(t.start), offset(t.end), "np"))
    for start, end, text in reversed(edits):
        source = source[:start] + text + source[end:]
    return source
