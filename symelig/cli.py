"""The ``symelig`` command: a thin layer over the Python API (parse → derive → emit → write).

Every user error ends as one line on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import enum
import sys
from typing import List, Optional

import typer

from .errors import SymeligError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Closed-form eligibilities e = ∂ log p(x | θ)/∂θ (Williams 1992), derived by SymPy.",
)


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"symelig {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Closed-form eligibilities e = ∂ log p(x | θ)/∂θ (Williams 1992), derived by SymPy."""


class Format(str, enum.Enum):
    text = "text"
    latex = "latex"
    numpy = "numpy"
    json = "json"
    markdown = "markdown"   # the page derivations/ holds for catalog entries, for any derivation


class EvalFormat(str, enum.Enum):
    text = "text"
    json = "json"


def _emit(text: str, output: Optional[str]) -> None:
    if output == "":
        raise SymeligError("-o needs a file name; omit it to print to stdout")
    if output and output != "-":  # -o - is stdout, as for most Unix tools
        from .files import write_atomic

        write_atomic(output, text)
        typer.echo(f"wrote {output}", err=True)
    else:
        typer.echo(text, nl=not text.endswith("\n"))


@app.command("list")
def list_catalog() -> None:
    """List every family and parametrization."""
    from . import catalog

    rows = [
        (e.family, e.param, ", ".join(e.parameters), ", ".join(e.arguments) or "-", e.support, e.torch or "-")
        for e in sorted(catalog() + _matrix_entries(), key=lambda e: e.family)  # stable: parametrizations keep their order
    ]
    header = ("family", "param", "differentiated", "also takes", "support of x", "torch.distributions")
    widths = [max(len(r[c]) for r in rows + [header]) for c in range(len(header))]
    for r in [header, *rows]:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())


def _matrix_entries() -> list:
    from .matrix import entries

    return entries()


def _is_matrix(family) -> bool:
    from .matrix import is_matrix_family

    return is_matrix_family(family)


def _catalog_only(family) -> None:
    """Commands built on the catalog engine's derivation (paper, eval-files) refuse a matrix family."""
    if _is_matrix(family):
        from .family import lookup

        lookup(family, None)  # raises the one-line error that names the commands it works with


def _matrix_derived(family, param, format: Format, standalone: bool, k, order: int, quantity, user) -> str:
    """derive for a family with a matrix parameter (symelig.matrix): its own printed forms."""
    from .matrix import derive as derive_matrix

    if k is not None or quantity is not None or any(v is not None for v in user[:5]) or user[5] != "x":
        raise SymeligError(f"{family} is derived in matrix form: --k, --quantity, --via, --wrt, --positive, --vector, "
                           "--log-prob and --sample-name are not available for it")
    if order not in (1, 2):
        raise SymeligError(f"--order is 1 (eligibility) or 2 (also Hessian and Fisher information), not {order}")
    if standalone and format is not Format.latex:
        raise SymeligError("--standalone makes a whole LaTeX document: use it with --format latex")
    d = derive_matrix(family, param)
    if format is Format.text:
        return d.text(order)
    if format is Format.latex:
        return d.latex_document(order) if standalone else d.latex_fragment(order)
    if format is Format.numpy:
        return d.numpy_source
    if format is Format.markdown:
        return d.markdown(order)
    import json

    return json.dumps(d.to_dict(order), indent=2, ensure_ascii=False) + "\n"


def _names(text: Optional[str]) -> list:
    return [n.strip() for n in text.split(",") if n.strip()] if text else []


# options that define a derivation outside the catalog (symelig.user)
_VIA = typer.Option(None, "--via", help='Reparametrize: "logits = z / tau" (then --wrt z,tau).')
_WRT = typer.Option(None, "--wrt", help="With --via or custom: the parameters to differentiate, comma-separated.")
_POSITIVE = typer.Option(None, "--positive", help="With --via or custom: names declared > 0, comma-separated.")
_VECTOR = typer.Option(None, "--vector", help="With --via on a vector parameter: the new names that are vectors.")
_LOG_PROB = typer.Option(None, "--log-prob", help='With family custom: the log-density, e.g. "-(x-m)**2/(2*s**2) - log(s)".')
_SAMPLE_NAME = typer.Option("x", "--sample-name", help="With family custom: the name of the sample in --log-prob.")
# --x is the sample's value (eval, explain); here it is kept only to point there, and, given a
# name, as the old spelling of --sample-name
_OLD_X = typer.Option(None, "--x", hidden=True)
_TAKES_VALUES = {"allow_extra_args": True, "ignore_unknown_options": True}


def _formulas_only(ctx: typer.Context, family, param, via, wrt, sample_name: str, x: Optional[str]) -> str:
    """derive and export print formulas: values (--probs 0.5,0.5 --x 0) get a pointer to eval
    and explain, other unknown options a "did you mean"; returns the sample's name."""
    from .errors import did_you_mean

    extra = list(ctx.args)
    if x is not None and x.isidentifier() and not extra:
        if sample_name != "x":
            raise SymeligError("give the sample's name once, with --sample-name")
        typer.echo("symelig: warning: --x NAME for the sample's name is deprecated; use --sample-name NAME "
                   "(--x is the sample's value, in eval and explain)", err=True)
        return x
    if x is not None:  # click took it out of the unknown options; users write the sample last
        extra = [*extra, "--x", x]
    if not extra:
        return sample_name
    flag = next((a for a in extra if a.startswith("-")), None)
    if flag is None:
        raise SymeligError(f"unexpected argument {extra[0]!r}: {ctx.command.name} takes one family name")
    if flag.split("=")[0][2:].replace("-", "_") in _value_names(family, wrt):
        given = " ".join(extra)
        what = "derive prints formulas" if ctx.command.name == "derive" else f"{ctx.command.name} writes code"
        if family == "custom" or via is not None:  # eval takes catalog entries; explain takes these too
            raise SymeligError(f"{what} and takes no values: for numbers at {given} run `symelig explain` with the same options and {given}")
        entry = f"{family}" + (f" --param {param}" if param else "")
        raise SymeligError(f"{what} and takes no values: for numbers at {given} run "
                           f"`symelig eval {entry} {given}`, or `symelig explain {entry} {given}` for every step")
    hint = did_you_mean(flag.split("=")[0], _own_options(ctx))
    raise SymeligError(f"No such option: {flag.split('=')[0]}" + (f";{hint}" if hint else ""))


def _own_options(ctx: typer.Context) -> list:
    """The command's own --options, for "did you mean"."""
    return [o for p in ctx.command.params for o in p.opts if o.startswith("--") and not getattr(p, "hidden", False)]


def _value_names(family, wrt) -> set:
    """What eval and explain take as --NAME for ``family``: x, its arguments and the parameters of
    every parametrization (or, for --via and custom, the --wrt names)."""
    from .family import families

    cls = families().get(family)
    names = {"x", *_names(wrt)}
    if cls is not None:
        names |= {*cls.arguments, *cls.parameters}
        names |= {n for p in cls.parametrizations().values() for n in p.parameters}
    return names


def _is_user(family, via, wrt, positive, vector, log_prob, x) -> bool:
    """Whether the options ask for a derivation outside the catalog (never cached)."""
    return family == "custom" or any(v is not None for v in (via, wrt, positive, vector, log_prob)) or x != "x"


def _resolve(family, param, via, wrt, positive, vector, log_prob, x):
    """A catalog entry, or a user derivation when --via or family custom asks for one."""
    from . import custom, derive as derive_entry, reparametrize

    if family == "custom":
        if not log_prob or via or param:
            raise SymeligError("family custom takes --log-prob \"…\" and --wrt (not --param or --via)")
        return custom(log_prob, _names(wrt), x, _names(positive))
    if via is not None:
        if param or log_prob:
            raise SymeligError("--via replaces --param (and --log-prob is for family custom)")
        return reparametrize(family, via, _names(wrt), _names(positive), _names(vector) if vector else None)
    if any(v is not None for v in (wrt, positive, vector, log_prob)) or x != "x":
        raise SymeligError("--wrt, --positive, --vector, --log-prob and --sample-name go with --via or family custom")
    return derive_entry(family, param)


@app.command(context_settings=_TAKES_VALUES)
def derive(
    ctx: typer.Context,
    family: str = typer.Argument(..., help="Family name, e.g. categorical (see `symelig list`), or custom."),
    param: Optional[str] = typer.Option(None, "--param", "-p", help="Parametrization, e.g. probs, logits."),
    format: Format = typer.Option(Format.text, "--format", "-f", help="Output format."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout (- is stdout; a symlink is written through; read-only, hard-linked and non-regular files are refused)."),
    standalone: bool = typer.Option(False, "--standalone", help="LaTeX: a whole document pdflatex compiles."),
    k: Optional[int] = typer.Option(None, "--k", help="Also expand for a concrete number of categories (1–64)."),
    order: int = typer.Option(1, "--order", help="1: the eligibility; 2: also the Hessian and the Fisher information."),
    quantity: Optional[str] = typer.Option(None, "--quantity", help="entropy or kl: the closed form and its gradients instead."),
    via: Optional[str] = _VIA, wrt: Optional[str] = _WRT, positive: Optional[str] = _POSITIVE,
    vector: Optional[str] = _VECTOR, log_prob: Optional[str] = _LOG_PROB, sample_name: str = _SAMPLE_NAME,
    x: Optional[str] = _OLD_X,
) -> None:
    """Print the log-likelihood and the eligibility of a family in a parametrization."""
    from . import cache

    sample_name = _formulas_only(ctx, family, param, via, wrt, sample_name, x)
    if _is_matrix(family):
        user = (via, wrt, positive, vector, log_prob, sample_name)
        _emit(_matrix_derived(family, param, format, standalone, k, order, quantity, user), output)
        return
    if quantity is not None:
        user = (via, wrt, positive, vector, log_prob, sample_name)
        _emit(_quantity(family, param, quantity, format, standalone, k, order, user), output)
        return
    if standalone and (format is not Format.latex or k is not None):
        raise SymeligError("--standalone makes a whole LaTeX document: use it with --format latex and without --k")
    if order not in (1, 2):
        raise SymeligError(f"--order is 1 (eligibility) or 2 (also Hessian and Fisher information), not {order}")
    if order == 2 and k is not None:
        raise SymeligError("--k expands the eligibility only; use it without --order 2")
    user = (via, wrt, positive, vector, log_prob, sample_name)
    if _is_user(family, *user):
        with _working(f"deriving {family}"):
            text = _derived(_resolve(family, param, *user), format, standalone, k, order)
        _emit(text, output)
        return
    request = ("derive", family, param, format.value, standalone, k) + ((order,) if order == 2 else ())
    text = cache.get(request)
    if text is None:
        from . import derive as derive_entry

        with _working(f"deriving {family}" + (f" --param {param}" if param else "")
                      + (" with its Hessian and Fisher information" if order == 2 else "")):
            text = _derived(derive_entry(family, param), format, standalone, k, order)
        cache.put(request, text)
    _emit(text, output)


def _derived(d, format: Format, standalone: bool, k: Optional[int], order: int = 1) -> str:
    if k is not None:
        return _expanded(d, k, format)
    if format is Format.text:
        text = d.text(order)
    elif format is Format.latex:
        text = d.latex_document(order) if standalone else d.latex_fragment(order)
    elif format is Format.numpy:
        text = d.full_numpy_source if order == 2 else d.numpy_source
    elif format is Format.markdown:
        from .pages import markdown

        text = markdown(d, order)
    else:
        import json

        text = json.dumps(d.to_dict(order), indent=2, ensure_ascii=False) + "\n"
    return text


def _expanded(d, k: int, format: Format) -> str:
    from . import expand
    from .emit import latex, text

    if format is Format.numpy:
        raise SymeligError("--k works with --format text, latex or json; the numpy kernel is the same for every K")
    if not d.symbolic.is_vector:
        raise SymeligError(f"--k expands the K categories of a vector parameter; {d.family} has none")
    table = expand.expand(d.symbolic, k)
    if format is Format.latex:
        return latex.render_table(d.symbolic, table)
    if format is Format.json:
        import json

        return json.dumps(text.table_dict(d.symbolic, table), indent=2, ensure_ascii=False) + "\n"
    return text.render_table(d.symbolic, table)


@app.command(
    "eval",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def evaluate(
    ctx: typer.Context,
    family: str = typer.Argument(..., help="Family name (see `symelig list`)."),
    param: Optional[str] = typer.Option(None, "--param", "-p", help="Parametrization."),
    format: EvalFormat = typer.Option(EvalFormat.text, "--format", "-f"),
    compat: Optional[str] = typer.Option(
        None, "--compat", help="tanh_normal: also log p as sb3, cleanrl or spinningup computes it, and its distance from the exact value.",
    ),
    quantity: Optional[str] = typer.Option(None, "--quantity", help="entropy or kl: its value (and gradients) instead; q's values as --NAME-q."),
    samples: Optional[int] = typer.Option(None, "--samples", help="With --quantity: a Monte Carlo estimate from this many draws, with its standard error."),
    seed: Optional[int] = typer.Option(None, "--seed", help="With --samples: the seed of numpy's Generator."),
) -> None:
    """Evaluate log p, the eligibility e and the gradient of the probability p·e at given values.

    Give each argument as --NAME v1,v2,...; e.g.
    symelig eval categorical --param probs --probs 0.69,0.1,0.2,0.01 --x 0
    """
    from . import derive as derive_entry
    from .evaluate import evaluate as run, parse_arguments, render

    if compat is not None:  # before the derivation: a wrong library or family is a one-line error at once
        from .squash import check_compat

        check_compat(compat, family)
    d = derive_entry(family, param)
    if quantity is not None or samples is not None or seed is not None:
        from .evaluate import quantity as run_quantity, render_quantity

        result = run_quantity(d, quantity, samples, seed, ctx.args, _own_options(ctx))
        if format is EvalFormat.json:
            import json

            typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
        else:
            typer.echo(render_quantity(result), nl=False)
        return
    # a matrix parameter is given by rows: --scale-tril "1,0;0.5,2"
    matrix = _is_matrix(family)
    values = parse_arguments(ctx.args, ["x", *d.arguments, *d.parameters], f"{d.family} --param {d.param}", _own_options(ctx),
                             rows=matrix, optional=() if matrix else d.symbolic.family.defaults)
    result = run(d, values, compat)
    if format is EvalFormat.json:
        import json

        typer.echo(json.dumps(result, indent=2))
    else:
        typer.echo(render(d, result), nl=False)


@app.command("eval-files")
def eval_files(
    family: str = typer.Argument(..., help="Family name (see `symelig list`)."),
    param: Optional[str] = typer.Option(None, "--param", "-p", help="Parametrization."),
    input: str = typer.Option(..., "--input", "-i", help="Folder with x.npy and one NAME.npy per argument."),
    output: str = typer.Option(..., "--output", "-o", help="Existing folder for log_prob.npy and one .npy per parameter."),
    memory_limit: str = typer.Option("1GB", "--memory-limit", help="Working memory for one block, e.g. 512MB."),
) -> None:
    """Eligibilities of logged data larger than memory: memory-mapped .npy in, .npy out, block by block."""
    import sys

    from . import derive as derive_entry
    from .outofcore import Interrupted, parse_size, run

    _catalog_only(family)
    limit = parse_size(memory_limit)
    d = derive_entry(family, param)

    def bar(rows):
        return typer.progressbar(length=rows, label="eligibility", file=sys.stderr)

    try:
        written = run(d, input, output, limit, progress=bar)
    except Interrupted as stop:  # the partial outputs are gone; exit as a shell reports the signal
        typer.echo(f"symelig: {stop}", err=True)
        raise typer.Exit(128 + stop.signum)
    typer.echo(f"wrote {', '.join(str(p) for p in written.values())}", err=True)


class Backend(str, enum.Enum):
    numpy = "numpy"
    array_api = "array-api"
    torch = "torch"
    jax = "jax"
    numba = "numba"


def _source(d, backend: "Backend") -> str:
    """The module's source: numpy's in-place kernels, numba's compiled loops, or the array API
    ones pinned to a library."""
    if backend is Backend.numpy:
        return d.full_numpy_source
    if backend is Backend.numba:  # writing the module needs no numba; importing it does
        from .emit.numba import module_source as numba_source

        return numba_source(d.symbolic, d.second_order)
    from .emit.xp import module_source

    return module_source(d.symbolic, backend.value, d.second_order)


class ExplainFormat(str, enum.Enum):
    text = "text"
    latex = "latex"
    markdown = "markdown"


@app.command(
    "explain",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def explain_steps(
    ctx: typer.Context,
    family: str = typer.Argument(..., help="Family name (see `symelig list`)."),
    param: Optional[str] = typer.Option(None, "--param", "-p", help="Parametrization."),
    format: ExplainFormat = typer.Option(ExplainFormat.text, "--format", "-f", help="Output format."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout (- is stdout; a symlink is written through; read-only, hard-linked and non-regular files are refused)."),
    standalone: bool = typer.Option(False, "--standalone", help="LaTeX: a whole document pdflatex compiles."),
    via: Optional[str] = _VIA, wrt: Optional[str] = _WRT, positive: Optional[str] = _POSITIVE,
    vector: Optional[str] = _VECTOR, log_prob: Optional[str] = _LOG_PROB,
    quantity: Optional[str] = typer.Option(None, "--quantity", help="entropy or kl: the steps of its closed form and gradients instead."),
) -> None:
    """Show the derivation step by step; with values (--probs 0.69,0.1,0.2,0.01 --x 0) evaluate
    every step and explain the numbers users confuse."""
    from . import explain
    from .evaluate import parse_arguments

    if standalone and format is not ExplainFormat.latex:
        raise SymeligError("--standalone makes a whole LaTeX document: use it with --format latex")
    if _is_matrix(family):
        _emit(_matrix_explained(family, param, format, ctx.args, (via, wrt, positive, vector, log_prob)), output)
        return
    if quantity is not None:
        _emit(_quantity_steps(ctx, family, param, quantity, format, standalone, (via, wrt, positive, vector, log_prob)), output)
        return
    with _working(f"explaining {family}" + (f" --param {param}" if param else "")):
        d = _resolve(family, param, via, wrt, positive, vector, log_prob, "x")
        entry = f"{d.family} --param {d.param}"
        values = parse_arguments(ctx.args, ["x", *d.arguments, *d.parameters], entry, _own_options(ctx)) if ctx.args else {}
        explanation = explain(d, **values)
    if format is ExplainFormat.latex:
        text = explanation.latex_document() if standalone else explanation.latex_fragment()
    elif format is ExplainFormat.markdown:
        text = explanation.markdown()
    else:
        text = explanation.text()
    _emit(text, output)


def _matrix_explained(family, param, format: "ExplainFormat", values: list, user: tuple) -> str:
    from .matrix import derive as derive_matrix

    d = derive_matrix(family, param)
    if values or any(v is not None for v in user):
        raise SymeligError(f"explain {family} shows the steps of the matrix-form derivation and takes no values or --via; "
                           f"for numbers run `symelig eval {family} --param {d.param} --x … --loc … --{d.parameters[1].replace('_', '-')} …`")
    if format is ExplainFormat.latex:
        raise SymeligError(f"explain {family} prints --format text or markdown; the LaTeX is `symelig derive {family} --format latex`")
    return d.explain_text() if format is ExplainFormat.text else d.markdown(order=1).split("## Step by step", 1)[1].lstrip("\n")


def _quantity_steps(ctx, family, param, quantity, format, standalone, user) -> str:
    """explain --quantity entropy|kl: the closed form's steps (no values: `eval --quantity` gives numbers)."""
    from .emit import quantity_steps
    from .entropy_kl import closed_form

    if quantity not in ("entropy", "kl"):
        raise SymeligError(f"--quantity is entropy or kl, not {quantity!r}")
    if any(v is not None for v in user) or standalone:
        raise SymeligError("explain --quantity works with a catalog entry (no --via, --log-prob or --standalone)")
    if ctx.args:
        raise SymeligError(f"explain --quantity shows the steps without values; for numbers run `symelig eval {family} --quantity {quantity} {' '.join(ctx.args)}`")
    with _working(f"deriving the {quantity} of {family}"):
        form = closed_form(quantity, family, param)
    if format is ExplainFormat.latex:
        return quantity_steps.latex(form)
    return quantity_steps.markdown(form) if format is ExplainFormat.markdown else quantity_steps.text(form)


@app.command(context_settings=_TAKES_VALUES)
def export(
    ctx: typer.Context,
    family: Optional[str] = typer.Argument(None, help="Family name (omit with --all), or custom."),
    param: Optional[str] = typer.Option(None, "--param", "-p", help="Parametrization."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="FILE.py (- for stdout), or a folder with --all."),
    all_entries: bool = typer.Option(False, "--all", help="Export every catalog entry into the folder -o."),
    backend: Backend = typer.Option(Backend.numpy, "--backend", "-b", help="Array library the module is written for."),
    via: Optional[str] = _VIA, wrt: Optional[str] = _WRT, positive: Optional[str] = _POSITIVE,
    vector: Optional[str] = _VECTOR, log_prob: Optional[str] = _LOG_PROB, sample_name: str = _SAMPLE_NAME,
    x: Optional[str] = _OLD_X,
) -> None:
    """Write a standalone module (log_prob, eligibility; with numpy also hessian, fisher,
    natural_gradient) that other code imports."""
    from pathlib import Path

    sample_name = _formulas_only(ctx, family, param, via, wrt, sample_name, x)
    if all_entries:
        if family or param:
            raise SymeligError("--all exports the whole catalog; give no family or --param with it")
        _export_all(Path(output or "."), backend)
        return
    if family is None:
        raise SymeligError("name a family to export (see `symelig list`), or use --all")
    if not output or not (output.endswith(".py") or output == "-"):
        raise SymeligError("give -o FILE.py: the module is written to a .py file (or -o - for stdout)")
    import keyword

    if output != "-" and (not Path(output).stem.isidentifier() or keyword.iskeyword(Path(output).stem)):
        raise SymeligError(f"{Path(output).name} is not an importable module name (letters, digits, _; not starting with a digit; not a Python keyword)")
    user = (via, wrt, positive, vector, log_prob, sample_name)
    with _working(f"deriving {family}" + (f" --param {param}" if param else "") + " and writing its kernels"):
        if _is_user(family, *user):
            source = _source(_resolve(family, param, *user), backend)
        else:
            source = _module(family, param, backend)
    _emit(source, output)


def _module(family: str, param: Optional[str], backend: "Backend") -> str:
    """The exported module of a catalog entry; numpy's comes from the derivation cache."""
    from . import cache, derive as derive_entry

    if _is_matrix(family):
        if backend is Backend.numba:
            raise SymeligError(f"{family} has no numba backend; export it with --backend numpy, array-api, torch or jax")
        d = derive_entry(family, param)
        return d.numpy_source if backend is Backend.numpy else d.array_api_source
    if backend is not Backend.numpy:
        return _source(derive_entry(family, param), backend)
    request = ("derive", family, param, Format.numpy.value, False, None, 2)  # the text of derive -f numpy --order 2
    source = cache.get(request)
    if source is None:
        source = derive_entry(family, param).full_numpy_source
        cache.put(request, source)
    return source


def _export_all(folder, backend: "Backend") -> None:
    """Every catalog entry into ``folder`` (created, with its parents, if missing), a status line
    counting the entries meanwhile; every file is checked before the first is written, and a
    folder this made is removed again when a check fails."""
    from . import catalog
    from .files import target, write_atomic

    if folder.exists() and not folder.is_dir():
        raise SymeligError(f"--all writes into a folder; {folder} exists and is not one")
    entries = catalog()
    sources = {}
    with _working("exporting") as status:
        for number, e in enumerate(entries, 1):
            status.update(f"exporting {number}/{len(entries)}: {e.family} --param {e.param}")
            sources[folder / f"{e.family}_{e.param}.py"] = _module(e.family, e.param, backend)
    made = [p for p in [folder, *folder.parents] if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SymeligError(f"cannot create folder {folder}: {err.strerror}") from None
    try:
        for path in sources:
            target(path)
    except SymeligError:
        for p in made:  # innermost first; they are empty
            p.rmdir()
        raise
    for path, source in sources.items():
        write_atomic(path, source)
    typer.echo(f"wrote {len(sources)} modules to {folder}", err=True)


def _working(message: str):
    """A status line on stderr while work that may take seconds runs (see symelig.progress)."""
    from .progress import Status

    return Status(message)


@app.command("html")
def html_site(
    entries: Optional[List[str]] = typer.Argument(None, help="FAMILY or FAMILY:PARAM to include (default: every catalog entry)."),
    output: str = typer.Option(..., "--output", "-o", help="Folder for the site (created if missing; pages symelig wrote there before are replaced)."),
) -> None:
    """Write a browsable catalog: an index and one page per entry, formulas in MathML (no network
    needed to view it)."""
    from .site import select, write

    chosen = select(entries or ())

    def progress(n, total, entry):
        typer.echo(f"[{n}/{total}] {entry.family} --param {entry.param}", err=True)

    folder = write(output, chosen, progress)
    typer.echo(f"wrote {len(chosen) + 1} pages to {folder} (open {folder / 'index.html'})", err=True)


@app.command("paper")
def paper_table(
    entries: List[str] = typer.Argument(..., help="FAMILY (its default parametrization) or FAMILY:PARAM, one or more."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write to this .tex file instead of stdout (- is stdout)."),
    fisher: bool = typer.Option(False, "--fisher", help="Add the Fisher information of each entry."),
    standalone: bool = typer.Option(False, "--standalone", help="A whole document pdflatex compiles, not only the table."),
) -> None:
    """Write a LaTeX table of the eligibilities of several entries, as a paper's appendix has one
    (a longtable: it needs \\usepackage{longtable})."""
    from . import derive as derive_entry
    from .emit import paper

    chosen = []
    for name in entries:
        family, _, param = name.partition(":")
        if name.count(":") > 1 or (":" in name and not param):
            raise SymeligError(f"{name!r} is not an entry: give FAMILY or FAMILY:PARAM, e.g. normal:log_scale")
        _catalog_only(family)
        chosen.append((family, param or None))
    with _working(f"deriving {len(chosen)} entries" + (" with their Fisher information" if fisher else "")):
        derivations = [derive_entry(family, param) for family, param in chosen]
        text = paper.document(derivations, fisher) if standalone else paper.table(derivations, fisher)
    _emit(text, output)




audit_app = typer.Typer(no_args_is_help=True, help="Audit estimators: what their expected gradient really is.")
app.add_typer(audit_app, name="audit")


class AuditFormat(str, enum.Enum):
    text = "text"
    json = "json"
    latex = "latex"


@audit_app.command("kl")
def audit_kl(
    family: str = typer.Argument(..., help="Family name, e.g. categorical (see `symelig list`)."),
    param: Optional[str] = typer.Option(None, "--param", "-p", help="Parametrization, e.g. logits."),
    format: AuditFormat = typer.Option(AuditFormat.text, "--format", "-f", help="Output format."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout (- is stdout)."),
) -> None:
    """Which KL each estimator's gradient estimates (k1, k2, k3, k3 with an importance ratio;
    in the loss and in the reward), with the bias as a formula, derived symbolically."""
    from . import audit

    result = audit.audit_kl(family, param)
    if format is AuditFormat.json:
        import json

        text = json.dumps(audit.to_dict(result), indent=2, ensure_ascii=False) + "\n"
    else:
        text = audit.latex(result) if format is AuditFormat.latex else audit.text(result)
    _emit(text, output)


def _quantity(family, param, quantity, format, standalone, k, order, user) -> str:
    """derive --quantity entropy|kl: the closed form derived by the engine, with gradients."""
    from .entropy_kl import closed_form
    from .emit import quantities

    if quantity not in ("entropy", "kl"):
        raise SymeligError(f"--quantity is entropy or kl, not {quantity!r}")
    if _is_user(family, *user) or standalone or k is not None or order != 1:
        raise SymeligError("--quantity works with a catalog entry and --format text, latex or json (no --via, --k, --order or --standalone)")
    if format not in (Format.text, Format.latex, Format.json):
        raise SymeligError(f"--quantity prints --format text, latex or json, not {format.value}")
    form = closed_form(quantity, family, param)
    if format is Format.json:
        import json

        return json.dumps(quantities.to_dict(form), indent=2, ensure_ascii=False) + "\n"
    return quantities.latex(form) if format is Format.latex else quantities.text(form)


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point: run the app; any user error becomes one line on stderr and exit code 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:  # a bare `symelig` is a request for help, not a usage error
        argv = ["--help"]
    _unicode_output()
    user_before = _user_derivations()
    try:
        code = app(args=argv, prog_name="symelig", standalone_mode=False)
    except SymeligError as err:
        _fail(str(err))
    except Exception as err:  # noqa: BLE001 -- Typer's own click-style signals, matched by shape
        # Typer (vendoring click or not) raises UsageError-like exceptions with format_message(),
        # Exit with exit_code, Abort on Ctrl-C; anything else is a bug and keeps its traceback,
        # except in a derivation of user text, where it is one line (symelig.user names the stage)
        if hasattr(err, "format_message"):
            _fail(_usage_message(err))
        if type(err).__name__ == "Exit":
            sys.exit(getattr(err, "exit_code", 0))
        if type(err).__name__ == "Abort":
            sys.exit(130)
        if _user_derivations() > user_before:
            detail = " ".join(f"{type(err).__name__}: {err}".split())
            _fail(f"the derivation of this expression failed ({detail[:200]}); symelig cannot derive it")
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def _usage_message(err) -> str:
    """Click's usage error in one line; an unknown option gets "did you mean" like a family."""
    from .errors import did_you_mean

    if getattr(err, "option_name", None) and hasattr(err, "possibilities"):  # click's NoSuchOption
        hint = did_you_mean(err.option_name, err.possibilities or [])
        return f"No such option: {err.option_name}" + (f";{hint}" if hint else "")
    return " ".join(err.format_message().split())


def _fail(message: str) -> None:
    typer.echo(f"symelig: error: {message}", err=True)
    sys.exit(2)


def _user_derivations() -> int:
    """How many derivations of user text (--via, custom) this process has started."""
    user = sys.modules.get(f"{__package__}.user")
    return getattr(user, "made", 0) if user is not None else 0


def _unicode_output() -> None:
    """Formulas are Unicode (Σ, ∂, ⎛).  Where stdout cannot encode them (PYTHONIOENCODING=ascii, a
    C locale), SymPy's pretty printer, which picks its drawing tables from stdout's encoding when
    it is imported, is set to Unicode anyway (files written with -o are UTF-8 whatever stdout is),
    and text written to that stdout degrades to backslash escapes instead of failing."""
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "Σ∂⎛".encode(encoding)
        return
    except (UnicodeEncodeError, LookupError):
        pass
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="backslashreplace")
    from sympy.printing.pretty.pretty_symbology import pretty_use_unicode

    pretty_use_unicode(True)


if __name__ == "__main__":
    main()
