"""The code generator's stages tested directly, so that a planner defect names the planner."""
from __future__ import annotations

import numpy as np
import pytest
from sympy import Symbol, symbols

import symelig
from symelig.emit.lowering import reuse_squares


def test_a_power_is_written_through_a_square_only_after_the_square_is_computed():
    """CSE may list ν³ before the ν² that a later temporary needs; writing ν³ as ν²·ν there read
    the square before it existed (UnboundLocalError in Student's t softplus_scale Hessian)."""
    nu = Symbol("nu", positive=True)
    t0, t1, t2 = symbols("_t0 _t1 _t2")
    common, reduced = reuse_squares([(t0, 1 / nu**3), (t1, nu**2), (t2, nu**5)], [nu**4 + t0])
    assert common[0] == (t0, 1 / nu**3)  # before _t1 is computed: as it was
    assert common[2] == (t2, t1**2 * nu)  # after: through the square
    assert reduced == [t1**2 + t0]


@pytest.mark.parametrize("density, wrt, point", [
    ("softplus((x+m)**3/s)*sigmoid(m*s)", ["m", "s"], {"m": 0.2, "s": 1.5}),
    ("-(x-m)**2/(2*s**2) - log(s) + log(1 + (x-m)**4/s**4)", ["m", "s"], {"m": 0.1, "s": 0.7}),
])
def test_second_order_kernels_of_user_densities_run(density, wrt, point):
    """Every temporary is assigned before it is read, whatever order CSE lists them in."""
    d = symelig.custom(density, wrt=wrt, positive=["s"])
    h = d.hessian(0.3, **point)
    assert h.shape == (2, 2) and np.all(np.isfinite(h))


# -- the buffer planner ------------------------------------------------------------------------

def _planner(big=("z", "_t0", "u"), deps=None):
    """Buffers over names: ``big`` ones have the output's size; deps maps a name to the arguments
    it depends on (default: itself)."""
    from symelig.emit.buffers import Buffers
    from symelig.emit.numpy import ArrayPrinter

    deps = deps or {}

    def deps_of(e):
        return frozenset().union(*(deps.get(str(s), frozenset({str(s)})) for s in getattr(e, "free_symbols", ())))

    def is_big(e):
        return any(str(s) in big for s in getattr(e, "free_symbols", ()))

    return Buffers(ArrayPrinter(), is_big, deps_of)


def _code(buffers) -> str:
    from symelig.emit.buffers import render

    return "\n".join(render(buffers.statements, buffers.printer))


def _written(buffers) -> list:
    """The Name records each statement writes into (out=, or an _into's buffer)."""
    from symelig.emit.buffers import Call

    outs = [s.out if isinstance(s, Call) else getattr(s.value, "out", None) for s in buffers.statements]
    return [o.args[0] if isinstance(o, Call) else o for o in outs if o is not None]


@pytest.mark.parametrize("expression", [
    "exp(z - m)*2", "z**3", "-z", "z*z*m", "softplus(z)", "1/z", "m - z*u", "log(z)*u/m", "(z + u)**4", "z**m",
])
def test_the_planner_never_writes_into_an_input(expression):
    from sympy import sympify

    from symelig.functions import softplus

    buffers = _planner()
    e = sympify(expression, locals={"softplus": softplus})
    owned = buffers.assign("out", e, consumable=e.free_symbols)
    inputs = [buffers.names[n] for n in ("z", "u", "m") if n in buffers.names]
    assert owned and not any(w in inputs for w in _written(buffers)), _code(buffers)
    assert "out=z" not in _code(buffers) and "out=u" not in _code(buffers)


def test_the_planner_computes_into_a_fresh_buffer_called_by_the_statements_name():
    from sympy import exp

    buffers = _planner()
    z, m = Symbol("z"), Symbol("m")
    assert buffers.assign("out", exp(z - m) * 2, consumable={z, m})
    first, *rest = _code(buffers).splitlines()
    assert first == "out = np.add(z, -m)" and rest == ["np.exp(out, out=out)", "np.multiply(out, 2, out=out)"]
    assert buffers.names["out"] is buffers.statements[0].target  # one record, renamed


def test_the_planner_recycles_a_temporary_at_its_last_use_only():
    from sympy import exp

    from symelig.emit.buffers import Assign, Call

    buffers = _planner()
    t0 = Symbol("_t0")
    buffers.owned("_t0", t0)
    buffer = buffers.names["_t0"]
    buffers.assign("a", exp(t0), consumable=set())          # _t0 is read again later
    assert buffer not in _written(buffers) and _code(buffers) == "a = np.exp(_t0)"
    buffers.assign("b", exp(t0), consumable={t0})           # its last use: recycled
    *_, inplace, alias = buffers.statements
    assert isinstance(inplace, Call) and inplace.out is buffer and inplace.args == (buffer,)
    assert isinstance(alias, Assign) and alias.value is buffer and buffers.names["b"] is alias.target
    assert _code(buffers).splitlines()[1:] == ["np.exp(_t0, out=_t0)", "b = _t0"]


def test_a_temporary_read_twice_by_its_last_statement_is_not_recycled():
    """exp(t)·t reads t after exp: writing exp into t first would change the second factor."""
    from sympy import exp

    buffers = _planner()
    t0 = Symbol("_t0")
    buffers.owned("_t0", t0)
    buffers.assign("out", exp(t0) * t0, consumable={t0})
    assert buffers.names["_t0"] not in _written(buffers), _code(buffers)


def test_a_target_that_is_another_name_is_not_owned():
    """An output equal to a common subexpression shares its buffer: it must not be written."""
    from symelig.emit.buffers import Assign

    buffers = _planner()
    t0 = Symbol("_t0")
    buffers.owned("_t0", t0)
    assert buffers.assign("e_z", t0, consumable=set()) is False
    statement, = buffers.statements
    assert isinstance(statement, Assign) and statement.value is buffers.names["_t0"]
    assert _code(buffers) == "e_z = _t0"


def test_an_output_aliasing_a_temporary_keeps_it_from_being_overwritten_later():
    """e_a = _t0, then exp(_t0) at _t0's last use: the kernel returns e_a, so _t0's buffer is not
    recycled."""
    from sympy import exp

    from symelig.emit.numpy import NumpyKernel

    d = symelig.derive("categorical", "logits").symbolic
    kernel = NumpyKernel(d)
    logits = Symbol("logits")
    lines, owned = kernel.elementwise({"e_a": -logits * 2, "e_c": exp(-logits * 2)})
    assert lines == ["_t0 = np.multiply(logits, -2)", "e_a = _t0", "e_c = np.exp(_t0)"]  # not exp(_t0, out=_t0)
    assert not owned["e_a"] and owned["e_c"]


def test_an_operand_that_may_not_broadcast_into_the_buffer_goes_through_into():
    """a (K,) parameter shared by a batch: writing t·p into t with out=t would fail where p has
    more axes than t; the planner proves the fit from the arguments each depends on, or asks
    ``_into`` at run time."""
    from symelig.emit.buffers import Call

    buffers = _planner(big=("_t0", "p"), deps={"_t0": frozenset({"x"}), "p": frozenset({"p"})})
    t0, p = Symbol("_t0"), Symbol("p")
    buffers.owned("_t0", t0)
    buffers.assign("out", t0 * p, consumable={t0})
    into = buffers.statements[0].value.out
    assert isinstance(into, Call) and into.function == "_into" and into.args == (buffers.names["_t0"], buffers.names["p"])
    assert _code(buffers) == "out = np.multiply(_t0, p, out=_into(_t0, p))" and "_into" in buffers.printer.helpers
    proven = _planner(big=("_t0", "p"), deps={"_t0": frozenset({"x", "p"}), "p": frozenset({"p"})})
    proven.owned("_t0", t0)
    proven.assign("out", t0 * p, consumable={t0})
    assert _code(proven) == "np.multiply(_t0, p, out=_t0)\nout = _t0" and "_into" not in proven.printer.helpers


def test_a_small_operand_read_by_the_ufunc_and_by_into_is_computed_once():
    buffers = _planner(big=("_t0",), deps={"_t0": frozenset({"x"})})
    t0, a, b = symbols("_t0 a b")
    buffers.owned("_t0", t0)
    buffers.assign("out", t0 * (a + b), consumable={t0})
    assert _code(buffers).splitlines() == ["_c0 = a + b", "out = np.multiply(_t0, _c0, out=_into(_t0, _c0))"]


def test_renaming_a_buffer_touches_that_buffer_only():
    """The buffer ``_b0`` becomes ``out``; a per-sample value also called ``_b0``, and ``_b00``,
    keep their names: renaming is one record's field, where a textual rename of the word ``_b0``
    turned ``out · _b0`` into ``out · out``."""
    from sympy import exp

    deps = {"z": frozenset({"x", "b"}), "_b0": frozenset({"b"}), "_b00": frozenset({"x"})}
    buffers = _planner(big=("z", "_b00"), deps=deps)
    z, b0, b00 = symbols("z _b0 _b00")
    buffers.assign("out", exp(z) * b0 + b00, consumable={z})
    assert _code(buffers).splitlines() == [
        "out = np.exp(z)", "np.multiply(out, _b0, out=out)", "np.add(out, _b00, out=out)"]


# -- lowering ----------------------------------------------------------------------------------

def _lowered(family, param, outputs=None):
    from symelig.emit.numpy import NumpyKernel

    d = symelig.derive(family, param).symbolic
    kernel = NumpyKernel(d)
    lines, owned = kernel.elementwise(outputs(d) if outputs else {"_log_prob": d.log_prob})
    return d, kernel, "\n".join(lines)


def test_a_softmax_is_lowered_to_one_max_one_shifted_exp_and_one_sum():
    d, kernel, code = _lowered("categorical", "logits", lambda d: {f"e_{n}": e[0] for n, e in d.eligibility_split.items()}
                               | {"lp": d.log_prob})
    assert code.count("_row_max(") == 1 and code.count("np.exp(") == 1 and code.count("_row_sum(") == 1
    assert "take_along_axis(logits, _x, axis=-1)" in code  # z_x: a gather, not a one-hot


def test_a_sum_is_one_reduction_statement_shared_by_every_use():
    """Σ_i p_i appears in the eligibility and in log p: one row sum for both."""
    d, kernel, code = _lowered("categorical", "probs", lambda d: {"a": d.eligibility_split["probs"][0], "b": d.log_prob})
    assert code.count("_row_sum(probs)") == 1, code


# -- assembly ----------------------------------------------------------------------------------

def test_assembly_refuses_a_name_that_is_not_a_python_identifier():
    from symelig.emit.assemble import function_source, identifier

    assert identifier("probs") == "probs"
    for bad in ("lambda", "a-b", "1x", ""):
        with pytest.raises(ValueError):
            identifier(bad)
    with pytest.raises(ValueError):
        function_source("f", ["x", "class"], "doc", ["return x"])


def test_a_module_lists_its_functions_and_exported_helpers():
    from symelig.emit import assemble

    d = symelig.derive("categorical", "logits").symbolic
    source = assemble.module(d, header='"""h"""\n', imports=["import numpy as np"], constants="",
                             functions=["def log_prob(x):\n    return x\n", "def eligibility(x):\n    return x\n"],
                             helpers=["def dense(b):\n    return b"], exported=["dense"])
    namespace: dict = {}
    exec(compile(source, "<assembled>", "exec"), namespace)
    assert namespace["__all__"] == ["log_prob", "eligibility", "dense"] and namespace["FAMILY"] == "categorical"


# -- the lowering's statement records ----------------------------------------------------------

def _statements(family, param, backend):
    d = symelig.derive(family, param).symbolic
    kernel = backend(d)
    kernel.elementwise({"_log_prob": d.log_prob})
    return kernel, kernel.lowering.statements


def test_reductions_are_records_that_each_backend_writes_in_its_library():
    """The lowering says what is computed (a row max, exp(f − max), a row sum, the other
    categories' share, the sample's entry); numpy and the array API write the same records."""
    from symelig.emit.lowering import Reduction
    from symelig.emit.numpy import NumpyKernel
    from symelig.emit.xp import ArrayApiKernel

    kernel, statements = _statements("categorical", "logits", NumpyKernel)
    assert [(str(s.name), s.value.kind if isinstance(s.value, Reduction) else None, s.vector) for s in statements] == [
        ("_max0", "max", False), ("_exp0", "exp_shifted", True), ("_sumexp0", "sum", False),
        ("_others0", "sum_except", False), ("_logsumexp0", None, False), ("_logits_at_x0", "at_x", False)]
    assert statements[1].value == Reduction("exp_shifted", (Symbol("logits"), Symbol("_max0")))
    assert [line for s in statements for line in kernel.statement(s)] == [
        "_max0 = _row_max(logits)", "_exp0 = np.subtract(logits, _max0)", "np.exp(_exp0, out=_exp0)",
        "_sumexp0 = _row_sum(_exp0)", "_others0 = _sum_except(_exp0, _sumexp0, _x)",
        "_logsumexp0 = _max0 + np.log(_sumexp0)", "_logits_at_x0 = np.take_along_axis(logits, _x, axis=-1)"]
    xp = ArrayApiKernel(symelig.derive("categorical", "logits").symbolic)
    assert [line for s in statements for line in xp.statement(s)] == [
        "_max0 = xp.max(logits, axis=-1, keepdims=True)", "_exp0 = xp.exp(logits - _max0)",
        "_sumexp0 = xp.sum(_exp0, axis=-1, keepdims=True)", "_others0 = _sum_except(xp, _exp0, _sumexp0, _x)",
        "_logsumexp0 = _max0 + xp.log(_sumexp0)", "_logits_at_x0 = xp.take_along_axis(logits, _x, axis=-1)"]


def test_a_row_sum_only_a_select_piece_needs_carries_its_gate():
    """The saddle-point form's sums (Dirichlet above a total of 100) are computed only if some
    row takes that piece: numpy asks np.any first, the array API computes them for all rows."""
    from symelig.emit.lowering import Reduction
    from symelig.emit.numpy import NumpyKernel
    from symelig.emit.xp import ArrayApiKernel

    for backend, line in ((NumpyKernel, "_sum4 = (_row_sum(x) if np.any(np.greater(_sum0, 100)) else 0)"),
                          (ArrayApiKernel, "_sum4 = xp.sum(x, axis=-1, keepdims=True)")):
        kernel, statements = _statements("dirichlet", "concentration", backend)
        gated = [s for s in statements if isinstance(s.value, Reduction) and s.value.gate is not None]
        assert gated and all(s.value.kind == "sum" and s.value.gate == (Symbol("_sum0") > 100) for s in gated)
        assert kernel.statement(gated[0]) == [line]
