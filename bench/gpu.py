"""GPU rows of the bench: the array API kernels on CUDA arrays of torch, CuPy and JAX, against
what a user of each library would write by hand, timed on the device with synchronisation.

Skips cleanly (prints why, exits 0) where no GPU or library is present.  Correctness is checked
against the numpy kernel on the host before anything is timed.

    python bench/gpu.py [--out bench/results-gpu]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import symelig  # noqa: E402

SHAPES = [(4096, 1000), (256, 100000)]


def timed(fn, sync, reps=30) -> float:
    for _ in range(3):
        fn()
    sync()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def torch_rows(kernel, x, z, dtype):
    import torch

    if not torch.cuda.is_available():
        return None
    sync = torch.cuda.synchronize
    tz = torch.as_tensor(z, device="cuda")
    tx = torch.as_tensor(x, device="cuda")

    def hand():
        e = torch.softmax(tz, -1).neg_()
        return e.scatter_add_(-1, tx[:, None], torch.ones_like(e[:, :1]))

    def distributions():
        leaf = tz.detach().requires_grad_(True)
        torch.distributions.Categorical(logits=leaf, validate_args=False).log_prob(tx).sum().backward()
        return leaf.grad

    def fused():
        leaf = tz.detach().requires_grad_(True)
        torch.log_softmax(leaf, -1).gather(-1, tx[:, None]).sum().backward()
        return leaf.grad

    ours = kernel(tx, tz)["logits"]
    assert ours.device.type == "cuda" and ours.dtype == tz.dtype
    np.testing.assert_allclose(ours.cpu().numpy(), hand().cpu().numpy(), rtol=1e-4 if dtype == np.float32 else 1e-10, atol=1e-6)
    with torch.no_grad():
        row = {"symelig on torch": timed(lambda: kernel(tx, tz), sync), "torch no-grad hand": timed(hand, sync)}
    row["torch.distributions autograd"] = timed(distributions, sync)
    row["torch fused autograd"] = timed(fused, sync)
    return row


def cupy_rows(kernel, x, z, dtype):
    import cupy

    cz, cx = cupy.asarray(z), cupy.asarray(x)
    sync = cupy.cuda.Device().synchronize

    def hand():
        e = cupy.exp(cz - cz.max(-1, keepdims=True))
        e /= -e.sum(-1, keepdims=True)
        e[cupy.arange(len(cx)), cx] += 1
        return e

    ours = kernel(cx, cz)["logits"]
    assert isinstance(ours, cupy.ndarray) and ours.dtype == cz.dtype
    np.testing.assert_allclose(cupy.asnumpy(ours), cupy.asnumpy(hand()), rtol=1e-4 if dtype == np.float32 else 1e-10, atol=1e-6)
    return {"symelig on cupy": timed(lambda: kernel(cx, cz), sync), "cupy hand": timed(hand, sync)}


def jax_rows(kernel, x, z, dtype):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    jz, jx = jax.device_put(jnp.asarray(z)), jax.device_put(jnp.asarray(x))
    if jz.devices().pop().platform != "gpu":
        return None
    ours = jax.jit(lambda x, z: kernel(x, z)["logits"])

    @jax.jit
    def hand(x, z):
        return jax.nn.one_hot(x, z.shape[-1], dtype=z.dtype) - jax.nn.softmax(z, -1)

    np.testing.assert_allclose(np.asarray(ours(jx, jz)), np.asarray(hand(jx, jz)), rtol=1e-4 if dtype == np.float32 else 1e-10, atol=1e-6)
    sync = lambda: None  # noqa: E731  (block_until_ready below)
    return {"symelig on jax (jit)": timed(lambda: ours(jx, jz).block_until_ready(), sync),
            "jax hand (jit)": timed(lambda: hand(jx, jz).block_until_ready(), sync)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results-gpu"))
    args = parser.parse_args()
    d = symelig.derive("categorical", "logits")
    kernel = d.array_api_kernels.eligibility
    rows, machine = [], "no GPU"
    for shape in SHAPES:
        for dtype in (np.float64, np.float32):
            rng = np.random.default_rng(0)
            z = rng.normal(scale=3, size=shape).astype(dtype)
            x = rng.integers(0, shape[1], size=shape[0])
            np.testing.assert_allclose(kernel(x, z)["logits"], d.kernels.eligibility(x, z)["logits"], rtol=1e-5)
            row = {"shape": "×".join(map(str, shape)), "dtype": np.dtype(dtype).name}
            for name, fn in (("torch", torch_rows), ("cupy", cupy_rows), ("jax", jax_rows)):
                try:
                    timings = fn(kernel, x, z, dtype)
                except ImportError:
                    timings = None
                if timings:
                    row.update({k: round(v, 3) for k, v in timings.items()})
            if len(row) > 2:
                rows.append(row)
                print(row, flush=True)
    try:
        import torch

        if torch.cuda.is_available():
            machine = torch.cuda.get_device_name()
    except ImportError:
        pass
    if not rows:
        print("no GPU library with a GPU here: GPU rows skipped")
        return
    columns = [c for c in rows[0] if c not in ("shape", "dtype")]
    lines = [f"GPU: {machine}. Milliseconds, medians of 30 synchronised runs (categorical logits).", "",
             "| shape | dtype | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 2)]
    lines += [f"| {r['shape']} | {r['dtype']} | " + " | ".join(f"{r.get(c, '-')}" for c in columns) + " |" for r in rows]
    out = Path(args.out)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
