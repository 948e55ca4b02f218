"""Bad input through the Python API: a SymeligError with one line naming what is allowed."""
from __future__ import annotations

import numpy as np
import pytest

import symelig
from symelig import SymeligError

CAT = ("categorical", "probs")


@pytest.mark.parametrize(
    "family,param,kwargs,message",
    [
        ("categorical", "probs", dict(x=4, probs=[0.5, 0.2, 0.2, 0.1]), "category index in {0, …, 3}"),
        ("categorical", "probs", dict(x=-1, probs=[0.5, 0.5]), "category index"),
        ("categorical", "probs", dict(x=0.5, probs=[0.5, 0.5]), "category index"),
        ("categorical", "probs", dict(x=0, probs=[0.5, -0.5]), "probs[1] = -0.5"),
        ("categorical", "probs", dict(x=0, probs=[0.5, np.nan]), "finite"),
        ("categorical", "probs", dict(x=1, probs=[1.0, 0.0]), "probability 0"),
        ("categorical", "probs", dict(x=0, probs=[[0.5, 0.5], [0.1]]), "rectangular"),
        ("categorical", "probs", dict(x=0, probs="0.5,0.5"), "numeric"),
        ("categorical", "probs", dict(x=0, probs=[]), "non-empty category axis"),
        ("categorical", "probs", dict(x=[0, 1, 0], probs=[[0.5, 0.5], [0.1, 0.9]]), "do not broadcast"),
        ("categorical", "probs", dict(x=0, logits=[0.5, 0.5]), "unknown argument 'logits'"),
        ("categorical", "probs", dict(x=0), "missing argument 'probs'"),
        ("categorical", "normalized_probs", dict(x=0, normalized_probs=[0.5, 0.6]), "sums to 1.1"),
        ("categorical", "logits", dict(x=0, logits=[0.0, np.inf]), "finite real"),
        ("multinomial", "probs", dict(x=[1, 1], total_count=3, probs=[0.5, 0.5]), "must sum to total_count"),
        ("multinomial", "probs", dict(x=[1, 1, 1], total_count=3, probs=[0.5, 0.5]), "disagree"),
        ("multinomial", "probs", dict(x=[1.5, 1.5], total_count=3, probs=[0.5, 0.5]), "integer counts"),
        ("multinomial", "probs", dict(x=[2, 0], total_count=2.5, probs=[0.5, 0.5]), "integer ≥ 0"),
        ("multinomial", "probs", dict(x=[2, 1], total_count=3, probs=[0.5, 0.0]), "probability 0"),
        ("categorical", "probs", dict(x=0, probs=[1e308, 1e308]), "sums past the float range"),
        ("dirichlet", "concentration", dict(x=[0.5, 0.5, 0.0], concentration=[1.0, 1.0, 1.0]), "entries > 0"),
        # a positive density whose log leaves float64: not "probability 0"
        ("normal", "scale", dict(x=0.3, loc=0.0, scale=1e-200), "too extreme for this precision"),
    ],
)
def test_bad_arguments_get_one_line_errors(family, param, kwargs, message):
    d = symelig.derive(family, param)
    with pytest.raises(SymeligError) as err:
        d.eligibility(**kwargs)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_family_and_parametrization_list_the_choices():
    with pytest.raises(SymeligError, match="choose one of: bernoulli, beta, .*categorical, .*multinomial"):
        symelig.derive("gaussian")
    with pytest.raises(SymeligError, match="choose one of: probs, normalized_probs, logits"):
        symelig.derive("categorical", param="softmax")


def test_validation_can_be_skipped_for_speed():
    d = symelig.derive(*CAT)
    e = d.eligibility(np.array([0]), validate=False, probs=np.array([[0.5, 0.5]]))
    np.testing.assert_allclose(e["probs"], [[1.0, -1.0]])


def test_validate_is_keyword_only():
    """A stray positional argument must not silently switch the checks off."""
    d = symelig.derive("normal", "scale")
    with pytest.raises(TypeError):
        d.eligibility(0.3, False, loc=0.0, scale=-1.0)


def test_scalar_inputs_give_zero_dimensional_arrays():
    e = symelig.derive("normal", "scale").eligibility(np.float32(0.3), loc=np.float32(0), scale=np.float32(1))
    assert all(isinstance(v, np.ndarray) and v.shape == () and v.dtype == np.float32 for v in e.values())
