"""Helpers of the generated matrix kernels for numpy (copied into each exported module).

numpy has no batched triangular solve: a solve is a substitution, one vectorized step per row
over the whole batch, O(d²) per sample.  np.linalg.solve on the same batch (an O(d³) LAPACK call
per matrix) measured 5–14× slower at batch 4096, d = 4, 8, 16.
"""
import math

import numpy as np

LOG_2PI = math.log(2 * math.pi)  # the constant of log p


def _solve_lower(L, b):
    """y with L y = b; L (…, d, d) lower triangular, b (…, d): forward substitution."""
    shape = np.broadcast_shapes(L.shape[:-1], b.shape)
    y = np.empty(shape, np.result_type(L, b))
    for i in range(shape[-1]):
        y[..., i] = (b[..., i] - np.einsum("...k,...k->...", L[..., i, :i], y[..., :i])) / L[..., i, i]
    return y


def _solve_lower_transposed(L, b):
    """y with Lᵀ y = b: back substitution by rows of L (contiguous), each solved y_i taken out
    of the remaining right-hand side at once; reading L's columns instead costs ~1.5× at d = 16."""
    shape = np.broadcast_shapes(L.shape[:-1], b.shape)
    rest = np.array(np.broadcast_to(b, shape), dtype=np.result_type(L, b))
    y = np.empty_like(rest)
    for i in reversed(range(shape[-1])):
        y[..., i] = rest[..., i] / L[..., i, i]
        if i:
            rest[..., :i] -= L[..., i, :i] * y[..., i, None]
    return y


def _solve_lower_columns(L, B):
    """Y with L Y = B, column by column (B (…, d, m))."""
    return np.swapaxes(_solve_lower(L[..., None, :, :], np.swapaxes(B, -1, -2)), -1, -2)


def _solve_lower_transposed_columns(L, B):
    return np.swapaxes(_solve_lower_transposed(L[..., None, :, :], np.swapaxes(B, -1, -2)), -1, -2)


def _eye_like(L):
    return np.broadcast_to(np.eye(L.shape[-1], dtype=L.dtype), L.shape)


def _tril_outer(a, b, k):
    """tril(a bᵀ, k) as one array: the outer product, then the upper part zeroed in place."""
    out = a[..., :, None] * b[..., None, :]
    out *= np.tri(out.shape[-1], k=k, dtype=out.dtype)
    return out


def _tril(M, k):
    return np.tril(M, k)


def _add_to_diagonal(M, v):
    """M + diag(v), written into M (always a fresh array here), broadcast first if v's batch is larger."""
    shape = np.broadcast_shapes(M.shape, np.shape(v)[:-1] + M.shape[-2:]) if np.ndim(v) else M.shape
    if shape != M.shape:
        M = np.array(np.broadcast_to(M, shape))
    np.einsum("...ii->...i", M)[...] += v  # a view of the diagonal: fancy indexing M[..., i, i] was 7× slower at d = 16
    return M


def _copy(M):
    return np.array(M)


def _diagonal(M):
    return np.diagonal(M, axis1=-2, axis2=-1)


def _exp(v):
    return np.exp(v)


def _dot(a, b):
    return np.einsum("...k,...k->...", a, b)


def _log_det_triangular(L):
    return np.sum(np.log(_diagonal(L)), axis=-1)


def _matvec(L, b):
    return np.einsum("...ij,...j->...i", L, b)


def _matvec_transposed(L, b):
    return np.einsum("...ji,...j->...i", L, b)
