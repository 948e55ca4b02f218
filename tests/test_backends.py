"""The array API kernels: every catalog entry on numpy, PyTorch and JAX arrays gives arrays of
the same library, device and dtype, equal to the numpy kernels (1e-12 float64, 1e-5 float32).
Libraries that are not installed are skipped."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import symelig

from conftest import assert_no_negative_zero, random_arguments

LIBRARIES = [lib for lib in ("numpy", "torch", "jax") if importlib.util.find_spec(lib)]


def _to(lib, value, dtype):
    value = np.asarray(value)
    if value.dtype.kind == "f":
        value = value.astype(dtype)
    if lib == "numpy":
        return value
    if lib == "torch":
        import torch

        return torch.tensor(value)  # keeps 0-d inputs 0-d
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    return jnp.asarray(value)


def _library(array) -> str:
    return type(array).__module__.split(".")[0].replace("jaxlib", "jax")


def _numpy(array):
    return np.asarray(array.cpu() if hasattr(array, "cpu") else array)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("lib", LIBRARIES)
def test_array_api_kernels_match_numpy(entry, lib, dtype):
    d = symelig.derive(entry.family, entry.param)
    args = random_arguments(d, np.random.default_rng(21), batch=(3,), size=4, dtype=dtype)
    expected = d.kernels.eligibility(**args)
    converted = {n: _to(lib, v, dtype) for n, v in args.items()}
    result = d.array_api_kernels.eligibility(**converted)
    tolerance = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-5)
    for name, value in result.items():
        assert _library(value) == lib, (name, type(value))
        assert str(value.dtype).endswith(np.dtype(dtype).name), (name, value.dtype)
        np.testing.assert_allclose(_numpy(value), expected[name], **tolerance, err_msg=name)
    np.testing.assert_allclose(_numpy(d.array_api_kernels.log_prob(**converted)), d.kernels.log_prob(**args), **tolerance)
    assert_no_negative_zero(result, "eligibility")
    assert_no_negative_zero(expected, "numpy eligibility")


def test_derive_dispatches_torch_tensors_and_keeps_them_on_their_device():
    torch = pytest.importorskip("torch")
    d = symelig.derive("categorical", param="logits")
    z = torch.randn(5, 7, dtype=torch.float32)
    x = torch.randint(0, 7, (5,))
    with torch.no_grad():
        e = d.eligibility(x, logits=z)["logits"]
    assert isinstance(e, torch.Tensor) and e.dtype == torch.float32 and e.device == z.device
    np.testing.assert_allclose(e.numpy(), d.eligibility(x.numpy(), logits=z.numpy())["logits"], rtol=1e-5, atol=1e-6)
    with pytest.raises(symelig.SymeligError, match="missing argument 'logits'"):
        d.eligibility(x, probs=z)


def test_jax_kernels_jit_and_vmap():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    d = symelig.derive("categorical", param="logits")
    rng = np.random.default_rng(0)
    z, x = rng.normal(size=(6, 5)), rng.integers(0, 5, size=6)
    expected = d.eligibility(x, logits=z)["logits"]
    jitted = jax.jit(lambda x, z: d.eligibility(x, logits=z)["logits"])
    np.testing.assert_allclose(np.asarray(jitted(jnp.asarray(x), jnp.asarray(z))), expected, rtol=1e-12)
    per_sample = jax.vmap(lambda x, z: d.eligibility(x, logits=z)["logits"])
    np.testing.assert_allclose(np.asarray(per_sample(jnp.asarray(x), jnp.asarray(z))), expected, rtol=1e-12)
    normal = symelig.derive("normal", "scale")
    grads = jax.jit(lambda x, m, s: normal.eligibility(x, loc=m, scale=s))(jnp.ones(3), jnp.zeros(3), 2 * jnp.ones(3))
    np.testing.assert_allclose(np.asarray(grads["scale"]), (1 - 4) / 8 * np.ones(3), rtol=1e-12)


@pytest.mark.parametrize("lib", LIBRARIES)
def test_shared_sample_and_shared_parameters_broadcast(lib):
    """One sample for a batch of logits, and one logits vector for a batch of samples."""
    d = symelig.derive("categorical", "logits")
    rng = np.random.default_rng(4)
    z, xs = rng.normal(size=(5, 4)), rng.integers(0, 4, size=5)
    for x, logits in ((np.asarray(2), z), (xs, z[0])):
        expected = d.kernels.eligibility(x, logits)["logits"]
        result = d.array_api_kernels.eligibility(_to(lib, x, np.float64), _to(lib, logits, np.float64))["logits"]
        np.testing.assert_allclose(_numpy(result), expected, rtol=1e-12)


def test_torch_autograd_flows_through_the_kernels():
    """In-place writes are for the kernel's own arrays only when autograd does not record them."""
    torch = pytest.importorskip("torch")
    z = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    e = symelig.derive("categorical", "logits").eligibility(torch.tensor([0, 1, 2]), logits=z)["logits"]
    (e**2).sum().backward()
    p = torch.softmax(z.detach(), -1)
    expected = -2 * (torch.eye(4)[[0, 1, 2]].double() - p)  # d/dz of Σ(δ − p)² through p
    expected = (expected[:, :, None] * (torch.diag_embed(p) - p[:, :, None] * p[:, None, :])).sum(1)
    torch.testing.assert_close(z.grad, expected)


def test_foreign_category_indices_are_checked():
    torch = pytest.importorskip("torch")
    d = symelig.derive("categorical", "logits")
    with pytest.raises(symelig.SymeligError, match="outside"):
        d.eligibility(torch.tensor([5, 1]), logits=torch.zeros(2, 4))
    with pytest.raises(symelig.SymeligError, match="integer category indices"):
        d.eligibility(torch.tensor([1.5, 2.0]), logits=torch.zeros(2, 4))
    mixed = d.eligibility(torch.tensor([1, 2]), logits=np.zeros((2, 4)))["logits"]  # numpy params join torch
    assert isinstance(mixed, torch.Tensor)


def test_jax_vmap_over_every_entry(entry):
    """vmap without jit traces each kernel per sample (no concrete values anywhere)."""
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    d = symelig.derive(entry.family, entry.param)
    args = random_arguments(d, np.random.default_rng(8), batch=(3,), size=4)
    names = list(args)
    shared = [n for n, c in d.symbolic.family.arguments.items() if c.own_axis]  # nvec: one for the batch, not mapped
    mapped = jax.vmap(lambda *values: d.array_api_kernels.eligibility(**dict(zip(names, values))),
                      in_axes=tuple(None if n in shared else 0 for n in names))
    result = mapped(*(jax.numpy.asarray(np.asarray(args[n])) for n in names))
    for name, value in d.kernels.eligibility(**args).items():
        np.testing.assert_allclose(np.asarray(result[name]), value, rtol=1e-10, atol=1e-12, err_msg=name)


def _shrunk(value, shape_choice, event):
    """``value`` (full batch) reduced to a broadcastable shape: keep an axis or make it 1/absent."""
    value = np.asarray(value)
    batch_ndim = value.ndim - event
    index = tuple(slice(None) if keep else slice(0, 1) for keep in shape_choice[:batch_ndim])
    value = value[index + (slice(None),) * event]
    drop = shape_choice[batch_ndim] if len(shape_choice) > batch_ndim else 0
    return value.reshape(value.shape[drop:]) if drop and all(s == 1 for s in value.shape[:drop]) else value


@pytest.mark.parametrize("seed", range(6))
def test_two_emitters_agree_under_broadcasting(entry, seed):
    """The in-place numpy kernels (emit/buffers.py) and the array API kernels (no in-place
    writes) are generated independently from the same derivation: with every argument shrunk
    to a random broadcastable shape they must give the same numbers."""
    d = symelig.derive(entry.family, entry.param)
    rng = np.random.default_rng(100 + seed)
    full = random_arguments(d, rng, batch=(2, 3), size=3)
    s = d.symbolic
    event = {"x": s.family.value.event_dim, **{n: c.event_dim for n, c in s.family.arguments.items()},
             **{n: c.event_dim for n, c in s.parametrization.parameters.items()}}
    args = {}
    for name, value in full.items():
        keep = tuple(bool(k) for k in rng.integers(0, 2, size=2))
        if name in s.family.arguments or (name == "x" and event["x"]):
            keep = (True, True)  # counts must keep matching their total
        args[name] = _shrunk(value, keep + (int(rng.integers(0, 3)),), event[name])
    expected = d.kernels.eligibility(**args)
    other = d.array_api_kernels.eligibility(**args)
    for name in expected:
        np.testing.assert_allclose(np.asarray(other[name]), expected[name], rtol=1e-11, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(np.asarray(d.array_api_kernels.log_prob(**args)), d.kernels.log_prob(**args), rtol=1e-11, atol=1e-12)
