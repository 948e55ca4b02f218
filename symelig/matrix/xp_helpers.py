"""Helpers of the generated matrix kernels for any array API library (copied into each exported
module); each takes the namespace first.  torch gets its batched triangular solve; other
libraries a substitution, one vectorized step per row, O(d²) per sample as well.
"""
import math

from array_api_compat import array_namespace, device

LOG_2PI = math.log(2 * math.pi)  # the constant of log p


def _namespace(*arrays):
    return array_namespace(*arrays)


def _torch(xp):
    return "torch" in xp.__name__


def _solve_lower(xp, L, b):
    """y with L y = b; L (…, d, d) lower triangular, b (…, d)."""
    if _torch(xp):
        import torch

        return torch.linalg.solve_triangular(L, b[..., None], upper=False)[..., 0]
    rows = []
    for i in range(b.shape[-1]):
        value = b[..., i]
        if i:
            value = value - xp.sum(L[..., i, :i] * xp.stack(rows, axis=-1), axis=-1)
        rows.append(value / L[..., i, i])
    return xp.stack(rows, axis=-1)


def _solve_lower_transposed(xp, L, b):
    """y with Lᵀ y = b."""
    if _torch(xp):
        import torch

        return torch.linalg.solve_triangular(L.mT, b[..., None], upper=True)[..., 0]
    d = b.shape[-1]
    rows = [None] * d
    for i in reversed(range(d)):
        value = b[..., i]
        if i < d - 1:
            value = value - xp.sum(L[..., i + 1:, i] * xp.stack(rows[i + 1:], axis=-1), axis=-1)
        rows[i] = value / L[..., i, i]
    return xp.stack(rows, axis=-1)


def _solve_lower_columns(xp, L, B):
    return xp.matrix_transpose(_solve_lower(xp, L[..., None, :, :], xp.matrix_transpose(B)))


def _solve_lower_transposed_columns(xp, L, B):
    return xp.matrix_transpose(_solve_lower_transposed(xp, L[..., None, :, :], xp.matrix_transpose(B)))


def _eye(xp, like):
    return xp.eye(like.shape[-1], dtype=like.dtype, device=device(like))


def _eye_like(xp, L):
    return xp.broadcast_to(_eye(xp, L), L.shape)


def _tril(xp, M, k):
    d = M.shape[-1]
    rows = xp.arange(d, device=device(M))
    keep = rows[None, :] <= rows[:, None] + k
    return xp.where(keep, M, xp.zeros_like(M))


def _tril_outer(xp, a, b, k):
    return _tril(xp, a[..., :, None] * b[..., None, :], k)


def _add_to_diagonal(xp, M, v):
    v = xp.asarray(v, dtype=M.dtype, device=device(M))
    return M + (v[..., :, None] if v.ndim else v) * _eye(xp, M)


def _copy(xp, M):
    return M  # nothing here writes into its arguments


def _diagonal(xp, M):
    return xp.linalg.diagonal(M)


def _exp(xp, v):
    return xp.exp(v)


def _dot(xp, a, b):
    return xp.sum(a * b, axis=-1)


def _log_det_triangular(xp, L):
    return xp.sum(xp.log(_diagonal(xp, L)), axis=-1)


def _matvec(xp, L, b):
    return xp.matmul(L, b[..., None])[..., 0]


def _matvec_transposed(xp, L, b):
    return xp.matmul(xp.matrix_transpose(L), b[..., None])[..., 0]
