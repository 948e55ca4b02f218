"""The numba backend's helpers: scalar functions compiled into the kernels' loops (one value at a
time, in the floating type of the call: ``type(u)``), and the Python functions of the wrappers
around them.  Each is the stability logic of the array helper of the same name
(:mod:`~symelig.emit.runtime.special`, :mod:`~symelig.emit.runtime.numpy_kernels`) written for
one value, where a branch costs nothing.

* exp is ``_exp``, a branch-free polynomial: numba here has no vector math library, and a call of
  libm's exp keeps LLVM from vectorizing the loops that are the kernels' main cost;
* scipy's special functions (gammaln, digamma, i0e, i1e, betaln) are the double versions that
  ``scipy.special.cython_special`` exports, called through a linker symbol (so that numba can
  cache the compiled kernels on disk); polygamma goes through the Hurwitz zeta of scipy's Cephes,
  which that module does not export, ported below.

Helpers take and return values of one floating type; the special functions compute in float64
and round once to that type, as scipy does for float32 arrays.  Importing this module needs numba,
llvmlite and scipy (the emitters read its text and need none of them).
"""
from __future__ import annotations

import math
import math as _math

import llvmlite.binding as _llvm
import numba as _numba
import numpy as np
import numpy as _np
from llvmlite import ir as _ir
from numba.core import cgutils as _cgutils
from numba.core import types as _types
from numba.extending import get_cython_function_address as _get_cython_function_address
from numba.extending import intrinsic as _intrinsic
from numba.extending import overload as _overload


def _njit(*function, **options):
    """numba.njit with numpy's floating-point semantics: x/0 is ±inf or nan, not an exception (which
    would also keep the loops that divide from vectorizing)."""
    return _numba.njit(*function, error_model="numpy", **options)


def _cython_special(export: str, arity: int):
    """An intrinsic calling the double version of a function that
    scipy.special.cython_special exports, by a linker symbol registered here: the compiled
    kernels refer to the symbol, not to this process's address, so numba can cache them."""
    symbol = f"symelig_scipy_{export}"
    _llvm.add_symbol(symbol, _get_cython_function_address("scipy.special.cython_special", export))

    def codegen(context, builder, signature, args):
        double = _ir.DoubleType()
        function_type = _ir.FunctionType(double, [double] * arity + [_ir.IntType(32)])
        function = _cgutils.get_or_insert_function(builder.module, function_type, symbol)
        return builder.call(function, [*args, _ir.Constant(_ir.IntType(32), 0)])  # skip_dispatch = 0

    if arity == 1:
        return _intrinsic(lambda typingctx, a: (_types.float64(_types.float64), codegen))
    return _intrinsic(lambda typingctx, a, b: (_types.float64(_types.float64, _types.float64), codegen))


_scipy_gammaln = _cython_special("gammaln", 1)
_scipy_digamma = _cython_special("__pyx_fuse_1psi", 1)
_scipy_i0e = _cython_special("i0e", 1)
_scipy_i1e = _cython_special("i1e", 1)
_scipy_betaln = _cython_special("betaln", 2)
_scipy_ndtr = _cython_special("__pyx_fuse_1ndtr", 1)
_scipy_erfcx = _cython_special("__pyx_fuse_1erfcx", 1)


@_intrinsic
def _pow2(typingctx, k):
    """2**k for a float k holding an integer in the normal exponent range, from its exponent
    bits (a bit pattern, so that loops over _exp vectorize)."""
    single = k == _types.float32
    integer = _ir.IntType(32 if single else 64)
    bias, position = (127, 23) if single else (1023, 52)

    def codegen(context, builder, signature, args):
        bits = builder.shl(builder.add(builder.fptosi(args[0], integer), _ir.Constant(integer, bias)), _ir.Constant(integer, position))
        return builder.bitcast(bits, _ir.FloatType() if single else _ir.DoubleType())

    return k(k), codegen


def _exp(u):
    """e**u without libm, whose calls keep loops from vectorizing: u = k·ln 2 + r with
    |r| ≤ ln(2)/2, e^r by a polynomial interpolating it at Chebyshev nodes (degree 11 in
    float64, 6 in float32: within 5e-18 and 3e-9 of it, so the result is within one ulp of
    numpy's exp), times 2^k from exponent bits, as 2·2^(k−1) so that the largest results still
    come out finite.  inf above the range, nan for nan, and 0 below e^−708 (e^−86.9 in float32),
    where numpy's results are at most 3e-308 (2e-38): not worth a second power of two in every
    call.  (In Python: math.exp; compiled code gets the overload for its floating type.)"""
    return _math.exp(u)


@_overload(_exp, jit_options={"fastmath": {"contract"}, "error_model": "numpy"})
def _exp_of_type(u):
    return _exp32 if u == _types.float32 else _exp64


def _exp64(u):
    v = min(max(u, -708.0), 709.79)
    k = _np.floor(v * 1.4426950408889634 + 0.5)
    r = (v - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10
    p = 2.5110037605963777e-08 * r + 2.763263963904103e-07
    p = p * r + 2.755724091857897e-06
    p = p * r + 2.4801485482328494e-05
    p = p * r + 0.00019841269890047113
    p = p * r + 0.0013888888952314775
    p = p * r + 0.008333333333319601
    p = p * r + 0.0416666666664881
    p = p * r + 0.1666666666666668
    p = p * r + 0.5000000000000019
    p = p * r + 1.0
    p = p * r + 1.0
    e = (p + p) * _pow2(k - 1.0)
    return u if u != u else e if u > -708.0 else 0.0


def _exp32(u):
    F = _np.float32
    v = min(max(u, F(-86.9)), F(88.73))
    k = _np.floor(v * F(1.4426950408889634) + F(0.5))
    r = (v - k * F(0.693145751953125)) - k * F(1.428606765330187e-06)
    p = F(0.0013941108433972674) * r + F(0.008375126398153335)
    p = p * r + F(0.04166635289677516)
    p = p * r + F(0.16666415514653277)
    p = p * r + F(0.5000000047117757)
    p = p * r + F(1.000000037716214)
    p = p * r + F(1.0)
    e = (p + p) * _pow2(k - F(1.0))
    return u if u != u else e if u > F(-86.9) else F(0.0)


@_njit(fastmath={"reassoc", "nsz"})
def _add(total, term):
    """total + term, which the compiler may regroup: a loop summing with it vectorizes (into
    partial sums, as numpy's own blocked sums do)."""
    return total + term


@_intrinsic
def _maxnum(typingctx, a, b):
    """LLVM's maxnum(a, b): a loop taking it under fast-math flags vectorizes into a max reduction
    (a compare and select does not)."""
    def codegen(context, builder, signature, args):
        kind = args[0].type
        maxnum = builder.module.declare_intrinsic("llvm.maxnum", [kind], _ir.FunctionType(kind, [kind, kind]))
        return builder.call(maxnum, args)

    return a(a, a), codegen


@_njit(fastmath={"nnan", "nsz", "reassoc"})
def _top(top, value):
    """max(top, value), which a loop along the row vectorizes (its values are never nan there:
    the inputs are checked, and a nan makes every output nan anyway)."""
    return _maxnum(top, value)


@_njit
def _sign(u):
    """−1, 0 or 1 (nan for nan), as np.sign."""
    F = type(u)
    return F(1.0) if u > 0 else F(-1.0) if u < 0 else u


@_njit
def _sigmoid(z):
    """1 / (1 + e^(−z)), accurate in both tails; 0 where e^(−z) overflows."""
    F = type(z)
    return F(1.0) / (F(1.0) + _exp(-z))


@_njit
def _softplus(z):
    """log(1 + e^z) = max(z, 0) + log1p(e^(−|z|)), as np.logaddexp(0, z)."""
    F = type(z)
    return max(z, F(0.0)) + _math.log1p(_exp(-abs(z)))


@_njit
def _log_softplus(z):
    """log softplus(z); z itself below −37, where softplus(z) = e^z to machine precision (and
    softplus itself would underflow)."""
    return z if z < -37 else _math.log(_softplus(z))


@_njit
def _sigmoid_over_softplus(z):
    """sigmoid(z)/softplus(z) = d log softplus(z)/dz; 1 below z = −37, where both underflow."""
    F = type(z)
    return F(1.0) if z < -37 else _sigmoid(z) / _softplus(z)


@_njit
def _xlogy(a, b):
    """a·log(b), 0 where a == 0 (an empty category of probability 0 contributes nothing)."""
    return type(a)(0.0) if a == 0 else a * _math.log(b)


@_njit
def _xdivy(a, b):
    """a / b, 0 where a == 0."""
    return type(a)(0.0) if a == 0 else a / b


@_njit
def _log1mexp(u):
    """log(1 − e^u) for u < 0: log(−expm1(u)) near 0, where 1 − e^u cancels, log1p(−e^u) below −log 2."""
    return _math.log(-_math.expm1(u)) if u > -0.6931471805599453 else _math.log1p(-_exp(u))


@_njit
def _normal_mass(a, b, w):
    """(log m, φ(a)/m, φ(b)/m) for m = Φ(b) − Φ(a), w = b − a ≥ 0 given, in float64: the array
    form's cases (runtime.special._normal_mass): the midpoint series for a narrow interval, the
    Mills ratio M(t) = √(π/2)·erfcx(t/√2) in a tail (mirrored below 0), log1p or erf across 0."""
    c = a + w / 2
    if w * max(abs(c), 1.0) < 0.1:
        q, c2 = w * w / 4, c * c
        he2, he4 = c2 - 1, (c2 - 6) * c2 + 3
        he6, he8 = ((c2 - 15) * c2 + 45) * c2 - 15, (((c2 - 28) * c2 + 210) * c2 - 420) * c2 + 105
        mass = w * (1 + q * (he2 / 6 + q * (he4 / 120 + q * (he6 / 5040 + q * he8 / 362880))))
        return (_math.log(mass) - c2 / 2 - 0.9189385332046728,
                _math.exp(w * (a + c) / 4) / mass, _math.exp(-w * (b + c) / 4) / mass)
    if a >= 0 or b <= 0:
        lo, hi = (a, b) if a >= 0 else (-b, -a)
        far = _math.exp(-w * (lo + hi) / 2)
        d = 1.2533141373155003 * (_scipy_erfcx(lo * 0.7071067811865476) - _scipy_erfcx(hi * 0.7071067811865476) * far)
        log_mass = -lo * lo / 2 - 0.9189385332046728 + _math.log(d)
        return (log_mass, 1 / d, far / d) if a >= 0 else (log_mass, far / d, 1 / d)
    tails = _scipy_ndtr(a) + _scipy_ndtr(-b)
    if tails < 0.5:
        log_mass = _math.log1p(-tails)
    else:
        log_mass = _math.log((_math.erf(b * 0.7071067811865476) - _math.erf(a * 0.7071067811865476)) / 2)
    return (log_mass, _math.exp(-a * a / 2 - 0.9189385332046728 - log_mass),
            _math.exp(-b * b / 2 - 0.9189385332046728 - log_mass))


@_njit
def _log_ndtr_difference(a, b, w):
    """log(Φ(b) − Φ(a)) for a ≤ b, w = b − a, rounded once to the type of a (see _normal_mass)."""
    return type(a)(_normal_mass(_np.float64(a), _np.float64(b), _np.float64(w))[0])


@_njit
def _normal_pdf_over_mass(a, b, w):
    """φ(a)/(Φ(b) − Φ(a)), w = b − a, either order (negative where b < a; see _normal_mass)."""
    a64, b64, w64 = _np.float64(a), _np.float64(b), _np.float64(w)
    if w64 < 0:
        return type(a)(-_normal_mass(b64, a64, -w64)[2])
    return type(a)(_normal_mass(a64, b64, w64)[1])


@_njit
def _bd0(a, m, d):
    """Loader's deviance a·log(a/m) + m − a ≥ 0, d = a − m given without cancellation: the series
    in v = d/(a + m) where |d| < 0.1(a + m), a·log(a/m) − d elsewhere (log a − log m where a/m
    would leave the floats); m at a = 0 (0·log 0 = 0), +inf at m = 0 < a, as the array forms."""
    F = type(a)
    if a == 0:
        return F(m)
    if m == 0:
        return F(_math.inf)
    if abs(d) < F(0.1) * (a + m):
        v = d / (F(2.0) * a - d)
        w = v * v
        series = w * (F(1 / 3) + w * (F(1 / 5) + w * (F(1 / 7) + w * (F(1 / 9) + w * (F(1 / 11) + w * (F(1 / 13) + w * (F(1 / 15) + w * (F(1 / 17) + w * F(1 / 19)))))))))
        return (series * F(2.0) * a + d) * v
    logs = _math.log(a) - _math.log(m)
    ratio = _math.log(a / m) if abs(logs) < 700 else logs
    return F(a * ratio - d)


@_njit
def _stirlerr(z):
    """Stirling's remainder log Γ(z) − [(z − ½) log z − z + ½ log 2π]: its series in 1/z above 15
    (six terms, exact to 4e-18 there), the difference itself below."""
    F = type(z)
    if z > F(15.0):
        r = F(1.0) / z
        q = r * r
        return r * (F(1 / 12) - q * (F(1 / 360) - q * (F(1 / 1260) - q * (F(1 / 1680) - q * (F(1 / 1188) - q * F(691 / 360360))))))
    return F(_gammaln(z) - (z - F(0.5)) * _math.log(z) + z - F(0.9189385332046728))


@_njit
def _log_softplus_curvature(z):
    """(σ(−z)·softplus(z) − σ(z))/softplus(z)² (→ −1/2 as z → −∞, its two terms cancelling):
    with t = e^z ≤ 1, q(t)·(t/log1p t)²/(1 + t), q = (log1p t − t)/t² by its series below t = 1/16;
    above z = 0, where nothing cancels, as written."""
    F = type(z)
    if z > F(0.0):
        s = _softplus(z)
        return (_sigmoid(-z) - _sigmoid(z) / s) / s
    t = _exp(max(z, F(-80.0)))
    if t < F(0.0625):
        q = ((((((((((((F(1 / 15) * t - F(1 / 14)) * t + F(1 / 13)) * t - F(1 / 12)) * t + F(1 / 11)) * t - F(1 / 10)) * t + F(1 / 9)) * t
                  - F(1 / 8)) * t + F(1 / 7)) * t - F(1 / 6)) * t + F(1 / 5)) * t - F(1 / 4)) * t + F(1 / 3)) * t - F(0.5)
    else:
        q = (_math.log1p(t) - t) / (t * t)
    ratio = t / _math.log1p(t)
    return F(q * ratio * ratio / (F(1.0) + t))


@_njit
def _factorial_remainder(a):
    """log a! − (a log a − a) = stirlerr(a) + ½ log(2πa) for a count a ≥ 0, 0 at a = 0: above 15
    ½ log(2πa) and stirlerr's series, below the difference itself."""
    F = type(a)
    if a > F(15.0):
        r = F(1.0) / a
        q = r * r
        series = r * (F(1 / 12) - q * (F(1 / 360) - q * (F(1 / 1260) - q * (F(1 / 1680) - q * (F(1 / 1188) - q * F(691 / 360360))))))
        return F(series + F(0.5) * (_math.log(a) + F(1.8378770664093453)))
    if a <= F(0.0):
        return F(0.0)
    return F(_gammaln(a + F(1.0)) + a - a * _math.log(a))


@_njit
def _fms(a, b, c):
    """a − b·c with the product exact: Dekker's two-product on the mantissas (nothing overflows,
    the error term scaled back exactly), a − p exact where a ≈ p, then − the error."""
    F = type(a)
    p = b * c
    mb, eb = _math.frexp(b)
    mc, ec = _math.frexp(c)
    split = F(134217729.0) if F(1.0) + F(1e-10) != F(1.0) else F(4097.0)  # 2^⌈t/2⌉ + 1, t the mantissa bits
    t = split * mb
    hb = t - (t - mb)
    lb = mb - hb
    t = split * mc
    hc = t - (t - mc)
    lc = mc - hc
    pm = mb * mc
    e = ((hb * hc - pm) + hb * lc + lb * hc) + lb * lc
    return F(a - p - _math.ldexp(e, eb + ec))


@_njit
def _log1pmx(z):
    """log(1 + z) − z: the series in s = z/(2 + z) for |z| < 1/4 (where the two cancel to −z²/2),
    the difference itself elsewhere."""
    F = type(z)
    if abs(z) >= 0.25:
        return _math.log1p(z) - z
    s = z / (F(2.0) + z)
    s2 = s * s
    tail = s2 / F(21.0)
    for c in (1 / 19, 1 / 17, 1 / 15, 1 / 13, 1 / 11, 1 / 9, 1 / 7, 1 / 5, 1 / 3):
        tail = s2 * (F(c) + tail)
    return F(2.0) * s * tail - z * z / (F(2.0) + z)


@_njit
def _gammaln(u):
    """log|Γ(u)| (scipy.special.gammaln)."""
    return type(u)(_scipy_gammaln(_np.float64(u)))


@_njit
def _digamma(u):
    """ψ(u) (scipy.special.digamma)."""
    return type(u)(_scipy_digamma(_np.float64(u)))


_ZETA_A = (12.0, -720.0, 30240.0, -1209600.0, 47900160.0, -1.8924375803183791606e9, 7.47242496e10,
           -2.950130727918164224e12, 1.1646782814350067249e14, -4.5979787224074726105e15,
           1.8152105401943546773e17, -7.1661652561756670113e18)


@_njit
def _zeta(x, q):
    """The Hurwitz zeta function Σ_k (k + q)^(−x) for x > 1, in float64: scipy's Cephes zeta
    (Euler–Maclaurin summation; the asymptotic form for q > 1e8), which cython_special does not
    export."""
    if x == 1.0:
        return _math.inf
    if x < 1.0:
        return _math.nan
    if q <= 0.0:
        if q == _math.floor(q):
            return _math.inf
        if x != _math.floor(x):
            return _math.nan
    if q > 1e8:
        return (1 / (x - 1) + 1 / (2 * q)) * q ** (1 - x)
    s = q ** -x
    a = q
    i = 0
    b = 0.0
    while i < 9 or a <= 9.0:
        i += 1
        a += 1.0
        b = a ** -x
        s += b
        if abs(b / s) < 1.11022302462515654042e-16:
            return s
    w = a
    s += b * w / (x - 1.0)
    s -= 0.5 * b
    a = 1.0
    k = 0.0
    for i in range(12):
        a *= x + k
        b /= w
        t = a * b / _ZETA_A[i]
        s = s + t
        if abs(t / s) < 1.11022302462515654042e-16:
            return s
        k += 1.0
        a *= x + k
        b /= w
        k += 1.0
    return s


@_njit
def _polygamma_64(n, u):
    """ψ_n(u) in float64 for n ≥ −1 (n = −1: log Γ, 0: ψ), as scipy.special: (−1)^(n+1)·n!·ζ(n + 1, u)
    for n ≥ 1."""
    if n == -1:
        return _scipy_gammaln(u)
    if n == 0:
        return _scipy_digamma(u)
    return (-1.0) ** (n + 1) * _math.gamma(n + 1.0) * _zeta(n + 1.0, u)


@_njit
def _polygamma(n, u):
    """ψ_n(u) (scipy.special.polygamma)."""
    return type(u)(_polygamma_64(n, _np.float64(u)))


@_njit
def _gamma_difference(n, b, d, a, shift):
    """ψ_n(a) − ψ_n(b + shift) (n = −1: log Γ), with a = b + d and shift 0 or 1, in float64.  Where
    |d| ≤ 1e-3·|b|, a rounds towards b and the difference cancels: there the Taylor series
    Σ_k d^k/k! ψ_(n+k)(b), whose terms fall by 1e-3 each (six of them), plus the pole
    ψ_n(b) − ψ_n(b + 1) if shift is 1; elsewhere the difference itself."""
    F = type(a)
    b, d, a = _np.float64(b), _np.float64(d), _np.float64(a)
    if abs(d) > 1e-3 * abs(b):
        return F(_polygamma_64(n, a) - _polygamma_64(n, b + shift))
    series = 0.0
    term = 1.0
    for k in range(1, 7):
        term = term * d / k
        series += term * _polygamma_64(n + k, b)
    if shift:
        series += (-1.0) ** (n + 1) * _math.gamma(n + 1.0) / b ** (n + 1)
    return F(series)


@_njit
def _betaln(a, b):
    """log B(a, b) (scipy.special.betaln)."""
    return type(a)(_scipy_betaln(_np.float64(a), _np.float64(b)))


@_njit
def _log_bessel_i0(k):
    """log I_0(κ) = log(i0e(κ)) + |κ|, which does not overflow for large κ."""
    return type(k)(_math.log(_scipy_i0e(_np.float64(k)))) + abs(k)


@_njit
def _bessel_i1_i0(k):
    """I_1(κ)/I_0(κ) = i1e(κ)/i0e(κ) (the exponential scalings cancel)."""
    return type(k)(_scipy_i1e(_np.float64(k))) / type(k)(_scipy_i0e(_np.float64(k)))


def _rows(a, batch, event=()):
    """``a`` as read-only C-contiguous rows (rows, *event) for a kernel: one row when it is the
    same for the whole batch (a shared parameter: the kernels read row 0 for every row), else one
    per batch element: a view where ``a`` has the batch shape, a copy where it broadcasts along
    some axes.  (Always read-only, so that each kernel is compiled once per dtype.)"""
    own = a.shape[:a.ndim - len(event)]
    shape = ((1,) if math.prod(own) == 1 else (-1,)) + event
    rows = np.ascontiguousarray(np.broadcast_to(a, (own if math.prod(own) == 1 else batch) + event).reshape(shape)).view()
    rows.flags.writeable = False
    return rows


def _categories(x, size):
    """Category indices as intp; one out of range is an IndexError (negative ones count from the
    end, as in numpy's take_along_axis)."""
    x = x.astype(np.intp)
    if x.size and (x.min() < -size or x.max() >= size):
        raise IndexError(f"a category index in x is out of bounds for {size} categories")
    return x
