"""The code generator's stages tested directly, so that a planner defect names the planner."""
from __future__ import annotations

import numpy as np
import pytest
from sympy import Symbol, symbols

import symelig
from symelig.emit.numpy import _reuse_squares


def test_a_power_is_written_through_a_square_only_after_the_square_is_computed():
    """CSE may list ν³ before the ν² that a later temporary needs; writing ν³ as ν²·ν there read
    the square before it existed (UnboundLocalError in Student's t softplus_scale Hessian)."""
    nu = Symbol("nu", positive=True)
    t0, t1, t2 = symbols("_t0 _t1 _t2")
    common, reduced = _reuse_squares([(t0, 1 / nu**3), (t1, nu**2), (t2, nu**5)], [nu**4 + t0])
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
