"""The ``derivations/`` folder: one LaTeX fragment, one Markdown page and one numpy module per
catalog entry, plus an index.  ``make derivations`` writes it; a test fails when it is stale.
"""
from __future__ import annotations

import sys
from pathlib import Path

from . import __version__, catalog, derive


def _stem(entry) -> str:
    return f"{entry.family}_{entry.param}"


CONVENTION = ("Eligibility e = ∂ log p(x | θ)/∂θ (Williams 1992): the gradient of the log-likelihood, "
              "not of a loss.")


def explain_command(d) -> str:
    """The command that prints the steps of ``d`` (a --via or custom derivation has its own)."""
    command = d.symbolic.parametrization.command
    if command:
        return command.replace("symelig export", "symelig explain").replace(" -o FILE.py", "")
    return f"symelig explain {d.family} --param {d.param}"


def markdown(d, order: int = 2, divergences: bool = False) -> str:
    """The page of one derivation (with the Hessian and Fisher information unless ``order`` is 1;
    with ``divergences`` the entropy and KL section of the ``derivations/`` pages)."""
    from .emit import steps
    from .emit.latex import likelihood, printed, responsibility, tex
    from .explanation import explain

    s = d.symbolic
    blocks = [f"\\log {likelihood(s)} = {tex(printed(s, s.log_prob))}"] + [
        f"\\frac{{\\partial \\log {likelihood(s)}}}{{\\partial {tex(s.wrt(n))}}} = {tex(printed(s, e))}"
        for n, e in s.eligibility.items()
    ] + [f"{tex(target)} = {tex(value)}" for target, value in s.definitions()]
    blocks += [gamma] if (gamma := responsibility(s)) else []  # γ_j, the responsibilities the formulas use
    math = "\n\n".join(f"```math\n{b}\n```" for b in blocks)
    command = s.parametrization.command
    if command:  # a --via or custom derivation: its own commands, no derivations/ files
        footer = f"Kernels: `{command}`.\n"
    else:
        footer = (
            f"Files: [`{_stem(d)}.tex`]({_stem(d)}.tex) (LaTeX fragment), "
            f"[`{_stem(d)}.py`]({_stem(d)}.py) (numpy kernels: `log_prob`, `eligibility`, `hessian`, `fisher`, "
            "`natural_gradient`).\n\n"
            f"Regenerate with `make derivations` (symelig {__version__}).\n"
        )
    return (
        f"# {d.family}, parametrization `{d.param}`\n\n"
        f"{s.parametrization.doc}\n\n"
        f"{CONVENTION}\n\n"
        f"{math}\n\n"
        f"{_second_order(d) if order == 2 else ''}"
        f"{_divergences(d) if divergences else ''}"
        f"## Step by step\n\nEach step is one rule the engine applied (`{explain_command(d)}`).\n\n"
        f"{steps.markdown(explain(d))}\n"
        f"{footer}"
    )


def second_order_rows(d, matrix: dict) -> list:
    """[(θ_a, θ_b, entry)] of a Hessian or Fisher matrix; θ_b of a vector parameter is its
    component l, so that the pair reads H_jl."""
    from .family import j, l

    s = d.symbolic
    return [(s.wrt(a), s.wrt(b).subs(j, l), entry) for (a, b), entry in matrix.items()]


def fisher_sentence(so) -> str:
    """How the Fisher information was obtained, or why it has no closed form."""
    if so.fisher is None:
        return f"Fisher information: no closed form ({so.no_closed_form})."
    return f"Fisher information F(θ) = E[e eᵀ] ({so.method}; valid when {'; '.join(so.assumptions)}):"


SINGULAR = "F is singular: F n = 0 for n_j = {}; `natural_gradient` applies the pseudo-inverse F⁺."


def _second_order(d) -> str:
    """The Hessian and Fisher information section (`symelig derive … --order 2`)."""
    from .emit.latex import likelihood, printed, tex

    so, s = d.second_order, d.symbolic
    hessian = [f"\\frac{{\\partial^2 \\log {likelihood(s)}}}{{\\partial {tex(a)}\\,\\partial {tex(b)}}} = {tex(printed(s, h))}"
               for a, b, h in second_order_rows(d, so.hessian)]
    out = "## Second order\n\nHessian of the log-likelihood:\n\n" + "\n\n".join(f"```math\n{b}\n```" for b in hessian) + "\n\n"
    if so.fisher is None:
        return out + fisher_sentence(so) + "\n\n"
    fisher = [f"F_{{{tex(a)}\\,{tex(b)}}} = {tex(printed(s, f))}" for a, b, f in second_order_rows(d, so.fisher)]
    out += fisher_sentence(so) + "\n\n"
    out += "\n\n".join(f"```math\n{b}\n```" for b in fisher) + "\n\n"
    for n in (so.null_space or {}).values():
        out += SINGULAR.format(f"${tex(n)}$") + "\n\n"
    return out


def _divergences(d) -> str:
    """The entropy and KL(p ‖ q) section: each closed form with its gradients (`derive --quantity`),
    or the line saying there is none and how to estimate it by Monte Carlo."""
    from sympy import IndexedBase

    from .emit.latex import tex
    from .entropy_kl import _offer, entropy_form, kl_form
    from .expectation import NoClosedForm
    from .family import j, lookup

    out = "## Entropy and KL divergence\n\n"
    for quantity, name, title in (("entropy", "entropy", r"\mathrm{H}(p)"), ("kl", "KL divergence", r"\mathrm{KL}(p \,\|\, q)")):
        try:
            form = {"entropy": entropy_form, "kl": kl_form}[quantity](d.family, d.param)
        except NoClosedForm as reason:
            offer = _offer(d.family, lookup(d.family, d.param)[1], quantity)
            out += f"No closed-form {name} from the engine's expectation routes ({reason}){offer}.\n\n"
            continue
        symbol = title.split("(")[0]
        rows = [f"{title} = {tex(form.value)}"] + [
            rf"\frac{{\partial {symbol}}}{{\partial {tex(w[j] if isinstance(w, IndexedBase) else w)}}} = {tex(g)}"
            for side, grads in form.gradients.items() for n, g in grads.items() for w in [form.wrt[side][n]]]
        what = "p's own parameters" if quantity == "entropy" else "p's parameters and q's (suffix _q), one parametrization"
        out += (f"The {name} in {what}; expectation by {form.how or 'the symbolic routes'} "
                f"(`symelig derive {d.family} --param {d.param} --quantity {quantity}`; steps: "
                f"`symelig explain {d.family} --param {d.param} --quantity {quantity}`):\n\n")
        out += "\n\n".join(f"```math\n{r}\n```" for r in rows) + "\n\n"
    return out


def builtin_entries() -> list:
    """The catalog entries shipped with symelig (a lab's own families are not written here)."""
    return [e for e in catalog() if e.builtin]


def _entry_files(entry) -> tuple:
    """(stem, LaTeX fragment, Markdown page, numpy module) of one entry: the unit of work a
    worker process does (deriving and printing one entry takes about a second)."""
    d = derive(entry.family, entry.param)
    return _stem(entry), d.latex_fragment(order=2), markdown(d, divergences=True), d.full_numpy_source


def _all_entry_files(entries: list) -> list:
    """Every entry's files, one worker process per CPU: the entries are independent and SymPy
    holds the GIL, so processes, not threads.  Spawned (not forked) workers import symelig
    afresh, so a caller that has imported threads (JAX, a test runner) is not forked."""
    import concurrent.futures
    import multiprocessing
    import os

    workers = min(len(entries), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if workers < 2:
        return [_entry_files(e) for e in entries]
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        return list(pool.map(_entry_files, entries))


def build() -> dict:
    """{relative path: text} for the whole folder."""
    files = {}
    index = [
        "# Derivations\n",
        "Generated by `make derivations`; do not edit. One row per catalog entry.\n",
        "| family | param | differentiated | page | LaTeX | numpy |",
        "|---|---|---|---|---|---|",
    ]
    entries = builtin_entries()
    for entry, (stem, fragment, page, module) in zip(entries, _all_entry_files(entries)):
        files[f"{stem}.tex"] = fragment
        files[f"{stem}.md"] = page
        files[f"{stem}.py"] = module
        index.append(
            f"| {entry.family} | `{entry.param}` | {', '.join(entry.parameters)} | "
            f"[{stem}.md]({stem}.md) | [{stem}.tex]({stem}.tex) | [{stem}.py]({stem}.py) |"
        )
    from .matrix import derive as derive_matrix, entries as matrix_entries

    for entry in matrix_entries():  # derived in matrix form (symelig.matrix), outside the catalog registry
        d = derive_matrix(entry.family, entry.param)
        stem = _stem(entry)
        files[f"{stem}.tex"] = d.latex_fragment(order=2)
        files[f"{stem}.md"] = d.markdown()
        files[f"{stem}.py"] = d.numpy_source
        index.append(
            f"| {entry.family} | `{entry.param}` | {', '.join(entry.parameters)} | "
            f"[{stem}.md]({stem}.md) | [{stem}.tex]({stem}.tex) | [{stem}.py]({stem}.py) |"
        )
    files["README.md"] = "\n".join(index) + "\n"
    return files


def _generated(path: Path) -> bool:
    """A page this module wrote for an entry that no longer exists; other files are left alone."""
    from .family import families
    from .matrix import FAMILIES as matrix_families

    return (
        path.is_file()
        and path.suffix in {".tex", ".md", ".py"}
        and any(path.stem.startswith(f"{name}_") for name in [*families(), *matrix_families])
    )


def write(folder: Path) -> None:
    from .files import write_atomic

    folder.mkdir(parents=True, exist_ok=True)
    files = build()
    for stale in folder.iterdir():
        if _generated(stale) and stale.name not in files:
            stale.unlink()
    for name, text in files.items():
        write_atomic(folder / name, text)


if __name__ == "__main__":
    write(Path(sys.argv[1] if len(sys.argv) > 1 else "derivations"))
