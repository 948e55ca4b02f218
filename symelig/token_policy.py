"""The per-token policy of a language model through its output layer, without a T × V array.

A token x_t is drawn from a categorical over the vocabulary with logits u/τ, u = W h_t
(hidden state h_t ∈ ℝ^d, output weight W ∈ ℝ^{V×d}, temperature τ > 0).  The engine derives
the categorical logits entry reparametrized by ``logits = u / tau``
(``symelig.reparametrize("categorical", "logits = u / tau", wrt=["u", "tau"])``)::

    log π(x | u, τ) = u_x/τ − log Σ_i e^{u_i/τ}
    ∂ log π/∂u_j    = (δ_jx − softmax(u/τ)_j)/τ
    ∂ log π/∂τ      = (Σ_i softmax(u/τ)_i u_i − u_x)/τ²

and the linear map u = W h carries ∂/∂u back by the chain rule (a matrix product, not a
formula of its own): ∂/∂h = Wᵀ ∂/∂u = (W_x − Wᵀ softmax(u/τ))/τ and
∂/∂W = (∂/∂u) hᵀ = (e_x − softmax(u/τ)) hᵀ/τ.  The entropy of π follows from the same two
derived quantities: H = −Σ_k π_k log π_k = log Σ_i e^{u_i/τ} − Σ_i π_i u_i/τ
= −(log π(x) + τ·∂ log π(x)/∂τ) for any x.

The tokens are taken in chunks of ``rows`` tokens, rows·V·itemsize ≤ ``chunk_bytes``: only a
rows × V block exists at a time, never T × V.  For numpy and torch the engine's formulas are
first reduced (:func:`linear_forms`) to coefficients, functions of τ, of four quantities per
token: the softmax of u/τ, its log-sum-exp, E_π[u] = Σ_i π_i u_i and u_x.  One block then holds
in turn the logits u/τ, e^{u/τ − max} and A_t ∂ log π/∂u, overwritten in place, and the work is
the three matrix products autograd does too (logits, Wᵀ(e/Σe) for ∂/∂h, gᵀh for ∂/∂W) plus a
few passes over the block; E_π[u] = h·(Wᵀπ) comes from the ∂/∂h product, not from the block.
Peak memory beyond the inputs and outputs (T·d + V·d + 3T numbers) is about one block: torch
(addmm_) and numpy (BLAS gemm with β = 1) accumulate ∂/∂W in place.  Other array libraries
(immutable arrays) evaluate the engine's generated array-API kernels chunk by chunk, with
several blocks of temporaries and about 20 passes over each.
"""
from __future__ import annotations

import functools

import numpy as np

from .errors import SymeligError

VIA = "logits = u / tau"


@functools.lru_cache(maxsize=None)
def derivation():
    """The engine's derivation the token policy evaluates: the categorical logits entry with
    logits = u/τ (``.latex()``, ``.text()`` show it)."""
    from .user import reparametrize

    return reparametrize("categorical", VIA, wrt=["u", "tau"], positive=["tau"])


def token_policy_gradient(hidden, weight, tokens, advantages, temperature=1.0, *, chunk_bytes: int = 160 * 2**20) -> dict:
    """The policy-gradient objective J = Σ_t A_t log π(x_t | h_t) of tokens drawn with logits
    W h_t/τ, and its gradients, in chunks of tokens (no T × V array).

    hidden (T, d), weight (V, d), tokens (T,) integers in {0, …, V−1}, advantages (T,),
    temperature τ > 0: numpy arrays, or torch (any array API library) tensors, float32 or
    float64.  Returns a dict of arrays of the inputs' library and dtype::

        objective    Σ_t A_t log π(x_t | h_t)                          ()
        hidden       ∂J/∂h_t = A_t (W_{x_t} − Wᵀ π_t)/τ                (T, d)
        weight       ∂J/∂W   = Σ_t A_t (e_{x_t} − π_t) h_tᵀ/τ           (V, d)
        temperature  ∂J/∂τ   = Σ_t A_t (Σ_i π_ti u_ti − u_{t,x_t})/τ²     ()
        entropy      H(π_t) per token                                  (T,)

    with π_t = softmax(W h_t/τ).  ``chunk_bytes`` bounds one rows × V block of logits (at least
    one token per chunk); numpy and torch need about one such block beyond the outputs.  The
    default, 160 MiB (263 tokens at V = 151936 in float32), keeps the matrix products nearly as
    fast per token as autograd's whole-batch ones (a chunk streams W twice and ∂/∂W once) while
    the peak stays under 1/8 of autograd's at T = 4096 (∂/∂W alone, V·d, is 1/12 of it).
    """
    from array_api_compat import array_namespace, is_numpy_namespace, is_torch_namespace

    xp = array_namespace(hidden, weight)
    T, V, dtype = _checked(xp, hidden, weight, tokens, advantages, temperature)
    device = getattr(hidden, "device", None)
    on = {} if device is None else {"device": device}
    tokens = xp.asarray(tokens, dtype=xp.__array_namespace_info__().default_dtypes()["indexing"], **on)  # int32 in jax without x64
    advantages = xp.astype(xp.asarray(advantages, **on), dtype)
    rows = max(1, min(T, int(chunk_bytes) // (V * _itemsize(dtype))))
    if is_torch_namespace(xp) or is_numpy_namespace(xp):
        chunks = _in_place_chunks(hidden, weight, tokens, advantages, float(temperature), rows)
    else:
        chunks = _kernel_chunks(xp, hidden, weight, tokens, advantages, float(temperature), rows, int(chunk_bytes))
    log_p, e_tau, grad_hidden, grad_weight = chunks
    return {
        "objective": xp.sum(advantages * log_p) + 0.0,  # + 0.0: no −0.0
        "hidden": grad_hidden,
        "weight": grad_weight,
        "temperature": xp.sum(advantages * e_tau) + 0.0,
        "entropy": 0.0 - (log_p + float(temperature) * e_tau),  # H = −(log π(x) + τ ∂ log π(x)/∂τ), any x
    }


@functools.lru_cache(maxsize=None)
def linear_forms() -> dict:
    """The engine's formulas as linear combinations of four per-token quantities, coefficients
    functions of τ: {name: function τ ↦ coefficients} for::

        log_prob  log π(x)     = c₀ u_x + c₁ log Σ_i e^{u_i/τ}
        u         ∂ log π/∂u_j = c₀ softmax(u/τ)_j + c₁ δ_jx
        tau       ∂ log π/∂τ   = c₀ Σ_i softmax(u/τ)_i u_i + c₁ u_x

    read off the derivation (a one-line SymeligError if it is not of this form), so that the
    in-place evaluation computes the four quantities and the engine says how they combine."""
    import sympy

    from .functions import LogSumExp, Softmax

    s = derivation().symbolic
    u, tau, x = s.symbols["u"], s.symbols["tau"], s.symbols["x"]
    (logsumexp,) = s.log_prob.atoms(LogSumExp)
    logits, i, size = logsumexp.args
    if logits != u[i] / tau:
        raise SymeligError(f"the derivation's log-sum-exp is over {logits}, not the logits u[i]/tau the in-place evaluation computes")
    e_u = s.eligibility["u"]
    (probs,), deltas = e_u.atoms(Softmax), e_u.atoms(sympy.KroneckerDelta)
    j = probs.args[3]
    if probs != Softmax(logits, i, size, j) or len(deltas) != 1 or set(next(iter(deltas)).args) != {j, x}:
        raise SymeligError(f"the derivation's ∂/∂u = {e_u} is not in softmax(u[i]/tau)_j and δ_jx")
    mean_u = sympy.Sum(Softmax(logits, i, size, i) * u[i], (i, 0, size - 1))
    forms = {
        "log_prob": (s.log_prob, (u[x], logsumexp)),
        "u": (e_u, (probs, *deltas)),
        "tau": (s.eligibility["tau"], (mean_u, u[x])),
    }
    return {name: _coefficients(name, expression, atoms, tau) for name, (expression, atoms) in forms.items()}


def _coefficients(name, expression, atoms, tau):
    """τ ↦ (c₀, c₁) with expression = c₀ atoms[0] + c₁ atoms[1] and the c free of everything but τ."""
    import sympy

    placeholders = sympy.symbols(f"_q0:{len(atoms)}")
    linear = expression.xreplace(dict(zip(atoms, placeholders)))
    coefficients = [sympy.diff(linear, q) for q in placeholders]
    rest = sympy.simplify(linear - sum(c * q for c, q in zip(coefficients, placeholders)))
    if rest != 0 or any(c.free_symbols - {tau} for c in coefficients):
        raise SymeligError(f"the derivation's {name} = {expression} is not linear in {', '.join(map(str, atoms))} with coefficients in tau alone")
    return sympy.lambdify(tau, [sympy.simplify(c) for c in coefficients], "math")


def _in_place_chunks(hidden, weight, tokens, advantages, tau, rows):
    """(log π(x_t), ∂ log π(x_t)/∂τ, ∂J/∂h, ∂J/∂W) for numpy arrays or torch tensors, with one
    rows × V block overwritten in place."""
    lp_u, lp_lse = linear_forms()["log_prob"](tau)
    e_probs, e_delta = linear_forms()["u"](tau)
    et_mean, et_u = linear_forms()["tau"](tau)
    T, V = hidden.shape[0], weight.shape[0]
    if isinstance(hidden, np.ndarray):
        from scipy.linalg import blas

        lib, on, row_max = np, {}, lambda z: z.max(1, keepdims=True)
    else:
        import torch as lib

        on, row_max = {"device": hidden.device}, lambda z: z.amax(1, keepdims=True)
        hidden, weight, advantages = hidden.detach(), weight.detach(), advantages.detach()  # values, not a graph
    block = lib.empty((rows, V), dtype=hidden.dtype, **on)
    grad_hidden = lib.empty(hidden.shape, dtype=hidden.dtype, **on)
    grad_weight = (lib.empty if T else lib.zeros)(weight.shape, dtype=hidden.dtype, **on)
    log_p = lib.empty((T,), dtype=hidden.dtype, **on)
    e_tau = lib.empty((T,), dtype=hidden.dtype, **on)
    for start in range(0, T, rows):
        stop = min(start + rows, T)
        h, x, a = hidden[start:stop], tokens[start:stop], advantages[start:stop, None]
        z = block[: stop - start]
        lib.matmul(h * (1 / tau) if tau != 1 else h, weight.T, out=z)  # u/τ
        peak = row_max(z)
        z -= peak
        lib.exp(z, out=z)  # e^{u/τ − max}: the shift only keeps exp finite
        total = z.sum(1, keepdims=True)
        weight_x = weight[x]
        u_x = (weight_x * h).sum(1)
        probs_w = lib.matmul(z, weight) / total  # Wᵀπ_t
        mean_u = (probs_w * h).sum(1)  # Σ_i π_i u_i = h·(Wᵀπ): no pass over the block
        log_p[start:stop] = lp_u * u_x + lp_lse * (peak[:, 0] + lib.log(total[:, 0]))
        e_tau[start:stop] = et_mean * mean_u + et_u * u_x
        grad_hidden[start:stop] = a * (e_probs * probs_w + e_delta * weight_x)  # Wᵀ(A ∂ log π/∂u)
        z *= a * (e_probs / total)  # A ∂ log π/∂u: the softmax part, then the δ part
        z[lib.arange(stop - start, **on), x] += a[:, 0] * e_delta
        if start == 0:  # written, not added: no pass to zero ∂/∂W first
            lib.matmul(z.T, h, out=grad_weight)
        elif lib is np:  # ∂/∂Wᵀ += hᵀ g by BLAS in place (column-major views, no copies)
            blas.get_blas_funcs("gemm", (z, h))(1.0, h.T, z.T, beta=1.0, c=grad_weight.T, trans_b=1, overwrite_c=1)
        else:
            grad_weight.addmm_(z.T, h)
    grad_hidden += 0.0  # −0.0 → +0.0 (the project's standard): a token with A_t = 0 gives −0 products
    grad_weight += 0.0
    return log_p, e_tau, grad_hidden, grad_weight


def _kernel_chunks(xp, hidden, weight, tokens, advantages, tau, rows, chunk_bytes):
    """As _in_place_chunks through the engine's generated array-API kernels, for libraries whose
    arrays cannot be written in place."""
    kernels = derivation().array_api_kernels
    device = getattr(hidden, "device", None)
    on = {} if device is None else {"device": device}
    tau_array = xp.asarray(tau, dtype=hidden.dtype, **on)
    T, V = hidden.shape[0], weight.shape[0]
    vocabulary_rows = max(1, chunk_bytes // (weight.shape[1] * _itemsize(hidden.dtype)))
    grad_hidden, grad_weight, log_probs, grad_taus = [], xp.zeros(weight.shape, dtype=hidden.dtype, **on), [], []
    for start in range(0, T, rows):
        stop = min(start + rows, T)
        h, x, a = hidden[start:stop, ...], tokens[start:stop], advantages[start:stop]
        u = xp.matmul(h, xp.matrix_transpose(weight))
        with np.errstate(divide="ignore"):  # log1p(−1) in the branch a where() discards (numpy)
            log_probs.append(kernels.log_prob(x, u=u, tau=tau_array))
            e = kernels.eligibility(x, u=u, tau=tau_array)
        del u
        g = e["u"] * a[:, None]
        grad_taus.append(e["tau"])
        del e
        grad_hidden.append(xp.matmul(g, weight))
        blocks = [xp.matmul(xp.matrix_transpose(g[:, first : first + vocabulary_rows]), h) for first in range(0, V, vocabulary_rows)]
        grad_weight = grad_weight + xp.concat(blocks)
    return xp.concat(log_probs), xp.concat(grad_taus), xp.concat(grad_hidden) + 0.0, grad_weight + 0.0  # no −0.0


def _itemsize(dtype) -> int:
    return 8 if "64" in str(dtype) else 4 if "32" in str(dtype) else 2


def _checked(xp, hidden, weight, tokens, advantages, temperature):
    """(T, V, dtype) after one-line checks of the shapes, dtypes, token range and τ."""
    if hidden.ndim != 2 or weight.ndim != 2 or hidden.shape[1] != weight.shape[1]:
        raise SymeligError(f"hidden must be (T, d) and weight (V, d) with the same d; got {tuple(hidden.shape)} and {tuple(weight.shape)}")
    if hidden.dtype != weight.dtype or not xp.isdtype(hidden.dtype, "real floating"):
        raise SymeligError(f"hidden and weight must share one floating dtype (float32 or float64); got {hidden.dtype} and {weight.dtype}")
    T, V = hidden.shape[0], weight.shape[0]
    token_values = np.asarray(tokens.cpu() if hasattr(tokens, "cpu") else tokens)
    if token_values.shape != (T,) or token_values.dtype.kind not in "iu":
        raise SymeligError(f"tokens must be ({T},) integers, one per row of hidden; got shape {token_values.shape} of {token_values.dtype}")
    bad = (token_values < 0) | (token_values >= V)
    if bad.any():
        at = int(np.argmax(bad))
        raise SymeligError(f"tokens[{at}] = {int(token_values[at])} is not allowed: tokens must be in {{0, …, {V - 1}}} (V = {V} rows of weight)")
    if tuple(getattr(advantages, "shape", np.shape(advantages))) != (T,):
        raise SymeligError(f"advantages must be ({T},), one per token; got shape {tuple(np.shape(advantages))}")
    if not (np.ndim(temperature) == 0 and np.isfinite(float(temperature)) and float(temperature) > 0):
        raise SymeligError(f"temperature = {temperature} is not allowed: temperature must be a finite number > 0")
    return T, V, hidden.dtype
