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
    from sympy import Symbol

    from symelig.emit.buffers import Buffers
    from symelig.emit.numpy import ArrayPrinter

    deps = deps or {}

    def deps_of(e):
        return frozenset().union(*(deps.get(str(s), frozenset({str(s)})) for s in getattr(e, "free_symbols", ())))

    def is_big(e):
        return any(str(s) in big for s in getattr(e, "free_symbols", ()))

    return Buffers(ArrayPrinter(), is_big, deps_of), Symbol


def test_the_planner_never_writes_into_an_input():
    from sympy import exp

    buffers, Symbol = _planner()
    z, m = Symbol("z"), Symbol("m")
    owned = buffers.assign("out", exp(z - m) * 2, consumable={z, m})
    code = "\n".join(buffers.lines)
    assert "out=z" not in code and owned  # z − m goes into a fresh buffer, then in place
    first, *rest = code.splitlines()
    assert first.startswith("out = np.") and rest and all("out=out" in line for line in rest), code


def test_the_planner_recycles_a_temporary_at_its_last_use_only():
    from sympy import exp

    buffers, Symbol = _planner()
    t0 = Symbol("_t0")
    buffers.owned("_t0", t0)
    buffers.assign("a", exp(t0), consumable=set())          # _t0 is read again later
    assert "out=_t0" not in "\n".join(buffers.lines)
    buffers.assign("b", exp(t0), consumable={t0})           # its last use: recycled
    assert buffers.lines[-1] == "np.exp(_t0, out=_t0)" or "out=_t0" in "\n".join(buffers.lines[-2:])


def test_a_target_that_is_another_name_is_not_owned():
    """An output equal to a common subexpression shares its buffer: it must not be written."""
    buffers, Symbol = _planner()
    t0 = Symbol("_t0")
    buffers.owned("_t0", t0)
    assert buffers.assign("e_z", t0, consumable=set()) is False
    assert buffers.lines == ["e_z = _t0"]


def test_an_operand_that_may_not_broadcast_into_the_buffer_goes_through_into():
    """a (K,) parameter shared by a batch: writing t·p into t with out=t would fail where p has
    more axes than t; the planner proves the fit from the arguments each depends on, or asks
    ``_into`` at run time."""
    buffers, Symbol = _planner(big=("_t0", "p"), deps={"_t0": frozenset({"x"}), "p": frozenset({"p"})})
    t0, p = Symbol("_t0"), Symbol("p")
    buffers.owned("_t0", t0)
    buffers.assign("out", t0 * p, consumable={t0})
    assert "_into(_t0, p)" in "\n".join(buffers.lines)
    proven, Symbol = _planner(big=("_t0", "p"), deps={"_t0": frozenset({"x", "p"}), "p": frozenset({"p"})})
    proven.owned("_t0", t0)
    proven.assign("out", t0 * p, consumable={t0})
    assert "out=_t0" in "\n".join(proven.lines) and "_into" not in "\n".join(proven.lines)


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
