"""The per-token policy of a language model through its output layer, without a T × V array.

A token x_t is drawn from a categorical over the vocabulary with logits u = W h_t / τ
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
rows × V block of logits and eligibilities exists at a time, and ∂/∂W is accumulated by blocks
of the vocabulary of at most ``chunk_bytes``.  Peak memory beyond the inputs and the outputs
(T·d + V·d + 3T numbers) is about 5·chunk_bytes (the logits block, the eligibility block, the
kernel's temporaries, one ∂/∂W block), whatever T; never T × V.  Each chunk reads W twice and
∂/∂W once, so chunks of more tokens spend less time streaming W.
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


def token_policy_gradient(hidden, weight, tokens, advantages, temperature=1.0, *, chunk_bytes: int = 64 * 2**20) -> dict:
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
    one token per chunk); the extra memory is about 4 such blocks.
    """
    from array_api_compat import array_namespace

    xp = array_namespace(hidden, weight)
    T, V, dtype = _checked(xp, hidden, weight, tokens, advantages, temperature)
    d = derivation()
    kernels = d.kernels if xp.__name__.endswith("numpy") else d.array_api_kernels
    device = getattr(hidden, "device", None)
    tokens = xp.asarray(tokens, dtype=xp.int64, device=device) if device is not None else xp.asarray(tokens, dtype=xp.int64)
    advantages = xp.astype(xp.asarray(advantages, device=device) if device is not None else xp.asarray(advantages), dtype)
    tau = xp.asarray(float(temperature), dtype=dtype, device=device) if device is not None else xp.asarray(float(temperature), dtype=dtype)
    rows = max(1, int(chunk_bytes) // (V * _itemsize(dtype)))
    vocabulary_rows = max(1, int(chunk_bytes) // (weight.shape[1] * _itemsize(dtype)))
    grad_hidden = xp.zeros(hidden.shape, dtype=dtype, device=device) if device is not None else xp.zeros(hidden.shape, dtype=dtype)
    grad_weight = xp.zeros(weight.shape, dtype=dtype, device=device) if device is not None else xp.zeros(weight.shape, dtype=dtype)
    log_probs, entropies, grad_taus = [], [], []
    for start in range(0, T, rows):
        stop = min(start + rows, T)
        h, x, a = hidden[start:stop, ...], tokens[start:stop], advantages[start:stop]
        u = xp.matmul(h, xp.matrix_transpose(weight))  # (rows, V): the only vocabulary-sized block
        with np.errstate(divide="ignore"):  # log1p(−1) in the branch a where() discards
            log_p = kernels.log_prob(x, u=u, tau=tau)
            e = kernels.eligibility(x, u=u, tau=tau)
        del u
        e_u, e_tau = e["u"], e["tau"]
        g = e_u * a[:, None]  # A_t ∂ log π/∂u
        del e, e_u
        grad_hidden[start:stop, ...] = xp.matmul(g, weight)
        for first in range(0, V, vocabulary_rows):  # gᵀh by blocks: no V × d temporary
            last = min(first + vocabulary_rows, V)
            grad_weight[first:last, ...] += xp.matmul(xp.matrix_transpose(g[:, first:last]), h)
        del g
        log_probs.append(log_p)
        grad_taus.append(e_tau)
        entropies.append(-(log_p + tau * e_tau))
    log_p, e_tau = xp.concat(log_probs), xp.concat(grad_taus)
    return {
        "objective": xp.sum(advantages * log_p),
        "hidden": grad_hidden,
        "weight": grad_weight,
        "temperature": xp.sum(advantages * e_tau),
        "entropy": xp.concat(entropies),
    }


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
