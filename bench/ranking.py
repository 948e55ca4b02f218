"""The Plackett–Luce row of ``make bench``: log p and the eligibility of a ranking policy against
autograd of a PyTorch implementation (PyTorch has no Plackett–Luce class, pytorch#38684).

The reference is the fastest plain PyTorch form we know: gather the placed logits, a reverse
``logcumsumexp`` (with the never-placed categories' log-sum-exp first), log p = Σ (z_{x_r} − Λ_r),
and ``backward()`` for the gradient, O(K) per row as the generated kernel is.  The step-by-step
form (a masked log-softmax per step) is O(K·k) per row and keeps k tensors of the batch's size for
the backward pass: 24 GB at the issue's shape, so it is the tests' oracle, not a candidate here.
"""
from __future__ import annotations

import numpy as np

SHAPE = (1024, 1000, 1000)  # batch, K categories, k placed (k = K: a full permutation), the target


def torch_log_prob(torch, logits, order):
    """Σ_r log softmax over the categories not yet placed, at x_r, as a careful PyTorch user writes it."""
    placed_logits = logits.gather(-1, order)
    placed = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, order, True)
    never = torch.logsumexp(logits.masked_fill(placed, -torch.inf), -1, keepdim=True)
    remaining = torch.logcumsumexp(torch.cat([never, placed_logits.flip(-1)], -1), -1).flip(-1)[..., :-1]
    return (placed_logits - remaining).sum(-1)


def candidates(torch, shape, dtype, rng) -> tuple:
    """({name: call}, check): the generated numpy kernels, the array-API kernels on torch tensors,
    and autograd; ``check`` asserts they compute the same log p and eligibility."""
    import symelig

    batch, size, placed = shape
    logits = rng.normal(scale=3.0, size=(batch, size)).astype(dtype)
    order = np.argsort(rng.random((batch, size)), axis=-1)[:, :placed]
    d = symelig.derive("plackett_luce", "logits")
    kernels, xp_kernels = d.kernels, d.array_api_kernels
    z, x = torch.from_numpy(logits), torch.from_numpy(order)

    def autograd():
        leaf = z.clone().requires_grad_(True)
        log_p = torch_log_prob(torch, leaf, x)
        log_p.sum().backward()
        return log_p.detach(), leaf.grad

    def generated():
        return kernels.log_prob(order, logits), kernels.eligibility(order, logits)["logits"]

    def on_torch():
        return xp_kernels.log_prob(x, z), xp_kernels.eligibility(x, z)["logits"]

    def check():
        want_log_p, want_e = (t.double().numpy() for t in autograd())
        rtol = 1e-4 if dtype == np.float32 else 1e-9
        for name, (log_p, e) in (("generated", generated()), ("symelig on torch", [np.asarray(v) for v in on_torch()])):
            np.testing.assert_allclose(log_p, want_log_p, rtol=rtol, err_msg=name)
            np.testing.assert_allclose(e, want_e, rtol=rtol, atol=rtol * np.abs(want_e).max(), err_msg=name)

    calls = {"generated (log p + e)": generated, "generated e only": lambda: kernels.eligibility(order, logits),
             "symelig on torch": on_torch, "torch autograd": autograd}
    return calls, check


def rows(torch, time_interleaved, shape=SHAPE, quick: bool = False) -> list:
    """One row per dtype: medians and ratios to autograd (r > 1: that candidate is slower)."""
    out = []
    for dtype in (np.float64, np.float32):
        calls, check = candidates(torch, shape, dtype, np.random.default_rng(15))
        check()  # the race is void unless every candidate computes the same thing
        medians = time_interleaved(calls, budget=1.0 if quick else 3.0, min_reps=5, max_reps=20)
        base = medians["torch autograd"]
        out.append({"shape": list(shape), "dtype": np.dtype(dtype).name,
                    "ms": {n: round(t * 1e3, 2) for n, t in medians.items()},
                    "ratio_to_autograd": {n: round(t / base, 3) for n, t in medians.items()}})
        print(markdown_row(out[-1]), flush=True)
    return out


def markdown_row(r) -> str:
    cells = " | ".join(f"{ms} ms ({r['ratio_to_autograd'][n]}×)" for n, ms in r["ms"].items())
    return f"| Plackett–Luce B×K×k = {'×'.join(map(str, r['shape']))} | {r['dtype']} | {cells} |"


def markdown(result_rows: list) -> list:
    if not result_rows:
        return []
    names = list(result_rows[0]["ms"])
    return ["Plackett–Luce log p and eligibility (logits, full permutations): medians, (r×) = time / torch autograd time, "
            "so r < 1 means faster than autograd; the reference is the O(K) logcumsumexp form (bench/ranking.py):", "",
            "| row | dtype | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names),
            *(markdown_row(r) for r in result_rows), ""]
