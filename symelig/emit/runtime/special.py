"""Stable special functions for the array kernels, written once against an array namespace.

Each takes the namespace ``xp`` first (numpy, or any array API library: torch, JAX, CuPy) and
uses only what the array API offers: no in-place updates (JAX arrays are immutable, torch's
autograd records), no Python branching on array values (``jax.jit`` traces them).  Each branch of
a piecewise form is evaluated at inputs clipped to its own region, so the branch not taken never
overflows or divides by zero.  The numpy modules get the same source with ``xp`` bound to numpy
(see :mod:`symelig.emit.runtime`), except where :mod:`~symelig.emit.runtime.numpy_kernels` has
a faster numpy form.
"""
from __future__ import annotations


def _special(xp):
    """The special functions (gammaln, digamma, polygamma, i0e, i1e) of the namespace's own
    library, imported when first needed: a module whose kernels use none imports without them."""
    name = xp.__name__
    if "torch" in name:
        import torch
        return torch.special
    if "jax" in name:
        import jax.scipy.special
        return jax.scipy.special
    if "cupy" in name:
        import cupyx.scipy.special
        return cupyx.scipy.special
    from scipy import special
    return special


def _gamma(xp, u):
    """Γ(u): the library's own where it has one (scipy, JAX, CuPy); torch.special has none, so
    exp(log|Γ(u)|) with the sign of Γ, which is negative on (−2k − 1, −2k)."""
    sp = _special(xp)
    if hasattr(sp, "gamma"):
        return sp.gamma(u)
    sign = xp.where((u > 0) | (xp.remainder(xp.floor(u), 2.0) == 0), 1.0, -1.0)
    return sign * xp.exp(sp.gammaln(u))


def _xlogy(xp, a, b):
    """a·log(b), 0 where a == 0 (an empty category of probability 0 contributes nothing)."""
    zero = a == 0
    return xp.where(zero, 0.0, a * xp.log(xp.where(zero, 1.0, b)))


def _xdivy(xp, a, b):
    """a / b, 0 where a == 0."""
    zero = a == 0
    return xp.where(zero, 0.0, a / xp.where(zero, 1.0, b))


def _sigmoid(xp, z):
    """1 / (1 + exp(−z)), accurate in both tails: as z → −∞ the result keeps a relative error of
    a few ulp, and where exp(−z) overflows it is the limit 0."""
    return 1 / (1 + xp.exp(-z))


def _softplus(xp, z):
    """log(1 + exp(z)) = max(z, 0) + log1p(exp(−|z|)), stable for any z."""
    return (z + xp.abs(z)) / 2 + xp.log1p(xp.exp(-xp.abs(z)))


def _log_softplus(xp, z):
    """log softplus(z); below z = −37, softplus(z) = exp(z) to machine precision, so
    log softplus(z) = z (softplus itself would underflow to 0 there)."""
    return xp.where(z < -37, z, xp.log(_softplus(xp, xp.maximum(z, -37.0))))


def _sigmoid_over_softplus(xp, z):
    """sigmoid(z)/softplus(z) = d log softplus(z)/dz; it is 1 to machine precision below
    z = −37, where both would underflow."""
    clipped = xp.maximum(z, -37.0)
    return xp.where(z < -37, 1.0, _sigmoid(xp, clipped) / _softplus(xp, clipped))


def _log_softplus_curvature(xp, z):
    """(sigmoid(−z)·softplus(z) − sigmoid(z))/softplus(z)², which tends to −1/2 as z → −∞ while
    its two terms grow as e^(−z) and cancel.  Where z ≤ 0, with t = e^z: q(t)·(t/log1p(t))²/(1 + t),
    q(t) = (log1p(t) − t)/t² = Σ_k (−1)^(k+1) t^k/(k + 2), summed (14 terms, exact to 1e-17) where
    t < 1/16 and taken directly above (log1p(t) − t then loses at most 32 ulp); t stops at e^−80,
    below which the value is −1/2 in float32 and float64.  Where z > 0 nothing cancels
    (sigmoid(−z)·softplus(z) < 0.7·sigmoid(z)): (sigmoid(−z) − sigmoid(z)/softplus(z))/softplus(z)."""
    t = xp.exp(xp.clip(z, -80.0, 0.0))
    small = t < 0.0625
    ts = xp.where(small, t, 0.0)
    q = (((((((((((((1 / 15) * ts - 1 / 14) * ts + 1 / 13) * ts - 1 / 12) * ts + 1 / 11) * ts - 1 / 10) * ts + 1 / 9) * ts - 1 / 8) * ts + 1 / 7) * ts - 1 / 6) * ts + 1 / 5) * ts - 1 / 4) * ts + 1 / 3) * ts - 1 / 2  # Horner's rule
    tl = xp.where(small, 1.0, t)
    q = xp.where(small, q, (xp.log1p(tl) - tl) / (tl * tl))
    ratio = t / xp.log1p(t)
    below = q * ratio * ratio / (1 + t)
    zp = xp.maximum(z, 0.0)
    s = _softplus(xp, zp)
    above = (_sigmoid(xp, -zp) - _sigmoid(xp, zp) / s) / s
    return xp.where(z > 0, above, below)


def _log1mexp(xp, u):
    """log(1 − e^u) for u < 0: log(−expm1(u)) near 0, where 1 − e^u cancels, log1p(−e^u) below −log 2."""
    near = u > -0.6931471805599453
    return xp.where(near, xp.log(-xp.expm1(xp.where(near, u, -1.0))), xp.log1p(-xp.exp(xp.where(near, -1.0, u))))


def _normal_mass(xp, a, b, w):
    """(log m, φ(a)/m, φ(b)/m) for the standard normal's mass m = Φ(b) − Φ(a) on [a, b], with
    w = b − a ≥ 0 given (it keeps its digits where a and b round to one number), each without
    cancellation or overflow:

    * narrow, |w|·max(1, |c|) < 0.1 about the midpoint c: m = w·φ(c)·(1 + S), S = Σ_k He_2k(c)·
      h^2k/((2k)!(2k + 1)), h = w/2 (the average of φ(c + s)/φ(c) = Σ_n He_n(c)(−s)^n/n! on
      |s| ≤ h; four terms, the fifth below 1e-16), and φ(a)/φ(c) = e^(w(a + c)/4);
    * in a tail, 0 ≤ a (or b ≤ 0, mirrored): m = φ(a)·D with D = M(a) − M(b)·e^(−w(a + b)/2),
      M(t) = Φ(−t)/φ(t) = √(π/2)·erfcx(t/√2) the Mills ratio: log m = −a²/2 − ½ log 2π + log D,
      φ(a)/m = 1/D (≈ a at a = 1e150, where φ(a) and m are e^(−5e299));
    * across 0: log1p(−Φ(a) − Φ(−b)) where the two tails hold less than half (exact as m → 1),
      else log((erf(b/√2) − erf(a/√2))/2), a sum of two positive terms."""
    sp = _special(xp)
    c = a + w / 2
    narrow = w * xp.maximum(xp.abs(c), 1.0) < 0.1
    cn, wn, an, bn = xp.where(narrow, c, 0.0), xp.where(narrow, w, 1.0), xp.where(narrow, a, 0.0), xp.where(narrow, b, 0.0)
    q, c2 = wn * wn / 4, cn * cn
    he2, he4 = c2 - 1, (c2 - 6) * c2 + 3
    he6, he8 = ((c2 - 15) * c2 + 45) * c2 - 15, (((c2 - 28) * c2 + 210) * c2 - 420) * c2 + 105
    mass = wn * (1 + q * (he2 / 6 + q * (he4 / 120 + q * (he6 / 5040 + q * he8 / 362880))))  # m/φ(c)
    n_log = xp.log(mass) - c2 / 2 - 0.9189385332046728
    n_a, n_b = xp.exp(wn * (an + cn) / 4) / mass, xp.exp(-wn * (bn + cn) / 4) / mass
    upper, lower = (a >= 0) & ~narrow, (b <= 0) & ~narrow & ~(a >= 0)
    tail = upper | lower
    lo = xp.where(upper, a, xp.where(lower, -b, 0.0))
    hi = xp.where(upper, b, xp.where(lower, -a, 1.0))
    wt = xp.where(tail, w, 1.0)
    far = xp.exp(-wt * (lo + hi) / 2)  # φ(hi)/φ(lo)
    d = 1.2533141373155003 * (sp.erfcx(lo * 0.7071067811865476) - sp.erfcx(hi * 0.7071067811865476) * far)
    t_log = -lo * lo / 2 - 0.9189385332046728 + xp.log(d)
    t_a, t_b = xp.where(upper, 1 / d, far / d), xp.where(upper, far / d, 1 / d)
    central = ~narrow & ~tail
    ac, bc = xp.where(central, a, -1.0), xp.where(central, b, 1.0)
    tails = sp.ndtr(ac) + sp.ndtr(-bc)
    wide = tails < 0.5
    aw, bw = xp.where(wide, -0.5, ac), xp.where(wide, 0.5, bc)
    c_log = xp.where(wide, xp.log1p(-xp.where(wide, tails, 0.0)),
                     xp.log((sp.erf(bw * 0.7071067811865476) - sp.erf(aw * 0.7071067811865476)) / 2))
    c_a = xp.exp(-ac * ac / 2 - 0.9189385332046728 - c_log)
    c_b = xp.exp(-bc * bc / 2 - 0.9189385332046728 - c_log)
    pick = lambda n, t, c: xp.where(narrow, n, xp.where(tail, t, c))  # noqa: E731
    return pick(n_log, t_log, c_log), pick(n_a, t_a, c_a), pick(n_b, t_b, c_b)


def _log_ndtr_difference(xp, a, b, w):
    """log(Φ(b) − Φ(a)) for a ≤ b, w = b − a (see _normal_mass)."""
    return _normal_mass(xp, a, b, w)[0]


def _normal_pdf_over_mass(xp, a, b, w):
    """φ(a)/(Φ(b) − Φ(a)), w = b − a, either order (negative where b < a; see _normal_mass)."""
    flip = w < 0
    _, at_lower, at_upper = _normal_mass(xp, xp.where(flip, b, a), xp.where(flip, a, b), xp.abs(w))
    return xp.where(flip, -at_upper, at_lower)


def _log1pmx(xp, z):
    """log(1 + z) − z: the series in s = z/(2 + z) for |z| < 1/4 (where the two cancel to −z²/2),
    the difference itself elsewhere."""
    near = xp.abs(z) < 0.25
    zs = xp.where(near, z, 0.0)
    s = zs / (2 + zs)
    s2 = s * s
    tail = s2 * (1/3 + s2 * (1/5 + s2 * (1/7 + s2 * (1/9 + s2 * (1/11 + s2 * (1/13 + s2 * (1/15 + s2 * (1/17 + s2 * (1/19 + s2 / 21)))))))))
    series = 2 * s * tail - zs * zs / (2 + zs)
    far = xp.where(near, 1.0, z)
    return xp.where(near, series, xp.log1p(far) - far)


def _gamma_difference(xp, n, b, d, a, shift):
    """ψ_n(a) − ψ_n(b + shift) (n = −1: log Γ), with a = b + d and shift 0 or 1.  Where
    |d| ≤ 1e-3·|b|, a rounds towards b and the difference cancels: there the Taylor series
    Σ_k d^k/k! ψ_(n+k)(b), whose terms fall by 1e-3 each (six of them), plus the pole
    ψ_n(b) − ψ_n(b + 1) = (−1)^(n+1)·n!/b^(n+1) if shift is 1; elsewhere the difference itself."""
    sp = _special(xp)

    def f(order, u):
        return sp.gammaln(u) if order == -1 else sp.digamma(u) if order == 0 else sp.polygamma(order, u)

    like = b if hasattr(b, "dtype") else d if hasattr(d, "dtype") else a  # a number (d = 1/2) as an array
    b = b if hasattr(b, "dtype") else xp.full_like(like, b)
    d = d if hasattr(d, "dtype") else xp.full_like(like, d)
    a = a if hasattr(a, "dtype") else xp.full_like(like, a)
    small = xp.abs(d) <= 1e-3 * xp.abs(b)
    bs = xp.where(small, b, 1.0)
    ds = xp.where(small, d, 0.0)
    t1 = ds
    t2 = t1 * ds / 2
    t3 = t2 * ds / 3
    t4 = t3 * ds / 4
    t5 = t4 * ds / 5
    t6 = t5 * ds / 6
    series = t6 * f(n + 6, bs) + t5 * f(n + 5, bs) + t4 * f(n + 4, bs) + t3 * f(n + 3, bs) + t2 * f(n + 2, bs) + t1 * f(n + 1, bs)
    if shift:
        factorial = (1.0, 1.0, 1.0, 2.0, 6.0, 24.0, 120.0, 720.0)[n + 1]  # n! (1 at n = −1)
        series = series + (-1.0) ** (n + 1) * factorial / bs ** (n + 1)
    return xp.where(small, series, f(n, a) - f(n, b + shift))


def _betaln(xp, a, b):
    """log B(a, b) = log Γ(s) − (log Γ(l + s) − log Γ(l)) with l = max(a, b), s = min(a, b): the
    difference by _gamma_difference, exact where l ≫ s."""
    large, small = xp.maximum(a, b), xp.minimum(a, b)
    return _special(xp).gammaln(small) - _gamma_difference(xp, -1, large, small, a + b, 0)


def _bd0(xp, a, m, d):
    """Loader's deviance a·log(a/m) + m − a ≥ 0, with d = a − m computed without cancellation.
    Where |d| < 0.1(a + m) the two terms cancel: there the series in v = d/(a + m), d·v +
    2a·v(v²/3 + v⁴/5 + …), nine terms (v² < 0.01: exact to 1e-19); elsewhere a·log(a/m) − d, with
    log(a/m) as log a − log m where a/m would leave the floats; m at a = 0 (0·log 0 = 0), +inf
    at m = 0 < a."""
    near = xp.abs(d) < 0.1 * (a + m)
    xs = xp.where(near, a, 1.0)
    ds = xp.where(near, d, 0.0)
    v = ds / (2 * xs - ds)
    w = v * v
    tail = w * (1 / 3 + w * (1 / 5 + w * (1 / 7 + w * (1 / 9 + w * (1 / 11 + w * (1 / 13 + w * (1 / 15 + w * (1 / 17 + w / 19))))))))
    series = ds * v + 2 * xs * v * tail
    xf = xp.where(near, 2.0, a)
    mf = xp.where(near, 1.0, m)
    both = (xf > 0) & (mf > 0)
    logs = xp.log(xp.where(both, xf, 1.0)) - xp.log(xp.where(both, mf, 1.0))
    inside = both & (xp.abs(logs) < 700)
    ratio = xp.log(xp.where(inside, xf, 1.0) / xp.where(inside, mf, 1.0))
    far = xp.where((mf == 0) & (xf > 0), float("inf"), xf * xp.where(inside, ratio, logs) - d)
    return xp.where(near, series, far)


def _stirlerr(xp, z):
    """Stirling's remainder log Γ(z) − [(z − ½) log z − z + ½ log 2π]: above z = 15 its series
    1/(12z) − 1/(360z³) + … (six terms, exact to 4e-18 there; the difference would cancel from
    terms of 40 to 0.006), below it the difference itself."""
    far = z > 15
    r = 1 / xp.where(far, z, 15.0)
    q = r * r
    series = r * (1 / 12 - q * (1 / 360 - q * (1 / 1260 - q * (1 / 1680 - q * (1 / 1188 - q * (691 / 360360))))))
    zn = xp.where(far, 1.0, z)
    return xp.where(far, series, _special(xp).gammaln(zn) - (zn - 0.5) * xp.log(zn) + zn - 0.9189385332046728)


def _factorial_remainder(xp, a):
    """log a! − (a log a − a) = stirlerr(a) + ½ log(2πa) for a count a ≥ 0, 0 at a = 0: above 15
    ½ log(2πa) and stirlerr's series (see _stirlerr), below the difference itself."""
    far = a > 15
    r = 1 / xp.where(far, a, 15.0)
    q = r * r
    series = r * (1 / 12 - q * (1 / 360 - q * (1 / 1260 - q * (1 / 1680 - q * (1 / 1188 - q * (691 / 360360))))))
    series = series + 0.5 * (xp.log(xp.where(far, a, 15.0)) + 1.8378770664093453)
    an = xp.where(far, 1.0, a)
    near = _special(xp).gammaln(an + 1) + an - an * xp.log(xp.where(an > 0, an, 1.0))
    return xp.where(far, series, near)


def _fms(xp, a, b, c):
    """a − b·c with the product exact: b·c = p + e by Dekker's two-product (factors near the top
    of the range scaled down by a power of 2 first, so that the split does not overflow, and e
    scaled back exactly), a − p exact where a ≈ p (Sterbenz), then − e."""
    p = b * c
    wide = p.dtype == xp.float64
    split, top, down = (134217729.0, 2.0**900, 2.0**-200) if wide else (4097.0, 2.0**100, 2.0**-40)  # split: 2^⌈t/2⌉ + 1, t the mantissa bits
    big_b, big_c = xp.abs(b) > top, xp.abs(c) > top
    b, c = xp.where(big_b, b * down, b), xp.where(big_c, c * down, c)
    t = split * b
    hb = t - (t - b)
    lb = b - hb
    t = split * c
    hc = t - (t - c)
    lc = c - hc
    e = ((hb * hc - b * c) + hb * lc + lb * hc) + lb * lc  # b·c − fl(b·c), exactly
    e = xp.where(big_b, e / down, e)
    e = xp.where(big_c, e / down, e)
    return (a - p) - e


def _with_ndim(xp, a, ndim):
    """``a`` with leading axes of length 1 added up to ``ndim`` axes (a view)."""
    return xp.reshape(a, (1,) * (ndim - a.ndim) + tuple(a.shape))


def _pinv_diagonal(xp, d):
    """1/d, and 0 where d = 0: the pseudo-inverse of a diagonal."""
    zero = d == 0
    return xp.where(zero, 0.0, 1 / xp.where(zero, 1.0, d))


def _rank_one_solve(xp, d, c, u, g):
    """(diag(d) + c·u·uᵀ)⁻¹ g by Sherman–Morrison, O(K): g/d − w·c(w·g)/(1 + c(w·u)), w = u/d;
    a category with d = 0 (and u = 0: a zero row of F) gets 0, as the pseudo-inverse gives."""
    inverse = _pinv_diagonal(xp, d)
    w = u * inverse
    wg = xp.sum(w * g, axis=-1, keepdims=True)
    wu = xp.sum(w * u, axis=-1, keepdims=True)
    return g * inverse - w * (c * wg / (1 + c * wu))


def _rank_one_pinv_solve(xp, d, n, g):
    """F⁺g for F = diag(d) + c·u·uᵀ singular with null vector n = u/d: g is projected onto the
    range of F (n⊥), divided by d, and the result projected off n (the minimum-norm solution).
    Categories with d = 0 (a softmax that underflowed, a count total of 0) are zero rows of F:
    they are left out of the range, and get 0."""
    inverse = _pinv_diagonal(xp, d)
    support = inverse != 0
    n = xp.where(support, n, 0.0)
    nn = xp.sum(n * n, axis=-1, keepdims=True)
    nn = xp.where(nn == 0, 1.0, nn)
    g = xp.where(support, g, 0.0)
    g = g - n * (xp.sum(n * g, axis=-1, keepdims=True) / nn)
    v = g * inverse
    return v - n * (xp.sum(n * v, axis=-1, keepdims=True) / nn)
