"""Cross-check against PyTorch autograd on torch.distributions (skipped without torch).

PyTorch's distribution is built from the *canonical* parameters, computed in PyTorch from the
entry's parameters through the parametrization's own substitution (exp, softplus, softmax…),
so autograd differentiates through the same map the engine did."""
from __future__ import annotations

import re

import numpy as np
import pytest
from sympy import Indexed, IndexedBase, Lambda, Symbol, lambdify

import symelig
from symelig.family import K

from conftest import moderate_arguments, random_arguments

torch = pytest.importorskip("torch")
D = torch.distributions
def _tensor_function(f):
    return lambda v: f(torch.as_tensor(v, dtype=torch.float64))


_TORCH_FUNCTIONS = {
    n: _tensor_function(f) for n, f in {"softplus": torch.nn.functional.softplus, "sigmoid": torch.sigmoid,
                                        "exp": torch.exp, "sqrt": torch.sqrt, "log": torch.log}.items()
}
# torch.distributions.VonMises evaluates log I0 with a polynomial approximation good to ~1e-9
# relative (its gradient to ~4e-7); symelig uses scipy.special.i0e (checked against scipy.stats.vonmises in test_kernels).
_RTOL = {"von_mises": 1e-6}


def _torch_distribution(family, **kwargs):
    """The torch distribution a family names: a class (``Normal``) or ``Independent(Normal)``,
    the class with its last batch axis made the event (log p sums over it)."""
    inner = re.fullmatch(r"Independent\((\w+)\)", family.torch)
    if inner:
        return D.Independent(getattr(D, inner.group(1))(**kwargs), 1)
    mixture = re.fullmatch(r"MixtureSameFamily\((\w+), (\w+)\)", family.torch)
    if mixture:  # each keyword to the class that takes it: logits to Categorical, loc and scale to Normal
        weights, component = (getattr(D, name) for name in mixture.groups())
        validate = kwargs.pop("validate_args", None)

        def part(cls):
            return cls(**{n: v for n, v in kwargs.items() if n in cls.arg_constraints}, validate_args=validate)

        return D.MixtureSameFamily(part(weights), part(component), validate_args=validate)
    return getattr(D, family.torch)(**kwargs)


def _canonical(d, theta: dict, size: int) -> dict:
    """The canonical parameters as torch tensors, differentiable w.r.t. ``theta``."""
    s = d.symbolic.symbols
    family = d.symbolic.family
    substitution = d.symbolic.parametrization.substitution(s)
    # every parameter component becomes a plain symbol so lambdify can take it as an argument
    flat, columns = {}, []
    for name in d.parameters:
        if isinstance(s[name], IndexedBase):
            for m in range(size):
                flat[s[name][m]] = Symbol(f"{name}__{m}")
                columns.append(theta[name][..., m])
        else:
            flat[s[name]] = Symbol(name)
            columns.append(theta[name])
    out = {}
    for name in family.parameters:
        if name not in substitution:
            out[name] = theta[name]
            continue
        value = substitution[name]
        exprs = [value(m) for m in range(size)] if isinstance(value, Lambda) else [value]
        tensors = []
        for expr in exprs:
            expr = expr.subs(K, size).doit().xreplace(flat)
            function = lambdify(list(flat.values()), expr, modules=[_TORCH_FUNCTIONS, "math"])
            tensors.append(function(*columns) + 0 * columns[0])
        out[name] = torch.stack(tensors, -1) if isinstance(value, Lambda) else tensors[0]
    return {family.torch_names.get(n, n): v for n, v in out.items()}


@pytest.mark.parametrize("sampler", [random_arguments, moderate_arguments], ids=["random", "moderate"])
def test_eligibility_matches_torch_autograd(entry, sampler):
    d = symelig.derive(entry.family, entry.param)
    family = d.symbolic.family
    if family.torch is None:
        pytest.skip(f"{family.name} has no torch.distributions counterpart")
    rng = np.random.default_rng(11)
    size = 5
    args = sampler(d, rng, size=size) if sampler is moderate_arguments else sampler(d, rng, batch=(4,), size=size)
    if family.name == "multinomial":  # torch's Multinomial takes one int total_count
        args["total_count"] = np.asarray(7)
        args["x"] = rng.multinomial(7, np.full(size, 1 / size), size=np.shape(args["x"])[:-1])
    theta = {n: torch.tensor(np.asarray(args[n], dtype=np.float64), requires_grad=True) for n in d.parameters}
    canonical = _canonical(d, theta, size)
    extra = {}
    for name in family.arguments:
        value = args[name]
        extra[name] = int(value) if family.name == "multinomial" else torch.tensor(np.asarray(value, dtype=np.float64))
    distribution = _torch_distribution(family, **canonical, **extra, validate_args=False)
    x = torch.tensor(args["x"]) if family.value is symelig.constraints.category else torch.tensor(np.asarray(args["x"], dtype=np.float64))
    log_p = distribution.log_prob(x)
    log_p.sum().backward()
    rtol = _RTOL.get(family.name, 1e-9)
    np.testing.assert_allclose(d.log_prob(**args), log_p.detach().numpy(), rtol=rtol, atol=1e-10)
    e = d.eligibility(**args)
    for name in d.parameters:
        ours, theirs = e[name], theta[name].grad.numpy()
        if d.symbolic.parametrization.parameters[name] is symelig.constraints.simplex:
            # torch renormalizes probs, so its gradient is ours plus a multiple of the all-ones
            # vector: the two agree on every direction that stays on the simplex
            ours, theirs = ours - ours.mean(-1, keepdims=True), theirs - theirs.mean(-1, keepdims=True)
        np.testing.assert_allclose(ours, theirs, rtol=max(rtol, 1e-8), atol=1e-10, err_msg=name)


def test_seed_reproduces_pytorch_probs_grad():
    """The founding question: backward of exp(log_prob) gives [0.31, -0.69, -0.69, -0.69]."""
    probs = torch.tensor([[0.69, 0.1, 0.2, 0.01]], dtype=torch.float64, requires_grad=True)
    torch.exp(D.Categorical(probs=probs).log_prob(torch.tensor([0]))).backward()
    d = symelig.derive("categorical", "probs")
    p = probs.detach().numpy()
    gradient = np.exp(d.log_prob([0], probs=p))[:, None] * d.eligibility([0], probs=p)["probs"]
    np.testing.assert_allclose(gradient, probs.grad.numpy(), rtol=1e-12)


# Independent oracles for the maps (typed in here on purpose, not taken from the families): the
# test above lambdifies the families' own substitutions, so a wrong map would check against itself.
F = torch.nn.functional
_ORACLE_MAPS = {
    ("normal", "log_scale"): (D.Normal, lambda loc, log_scale: dict(loc=loc, scale=torch.exp(log_scale))),
    ("normal", "softplus_scale"): (D.Normal, lambda loc, raw_scale: dict(loc=loc, scale=F.softplus(raw_scale))),
    ("normal", "natural"): (D.Normal, lambda eta1, eta2: dict(loc=-eta1 / (2 * eta2), scale=torch.sqrt(-1 / (2 * eta2)))),
    ("poisson", "log_rate"): (D.Poisson, lambda log_rate: dict(rate=torch.exp(log_rate))),
    ("exponential", "natural"): (D.Exponential, lambda eta: dict(rate=-eta)),
    ("gamma", "natural"): (D.Gamma, lambda eta1, eta2: dict(concentration=eta1 + 1, rate=-eta2)),
    ("beta", "log_concentration"): (D.Beta, lambda log_concentration1, log_concentration0: dict(
        concentration1=torch.exp(log_concentration1), concentration0=torch.exp(log_concentration0))),
    ("geometric", "natural"): (D.Geometric, lambda eta: dict(probs=1 - torch.exp(eta))),
    ("bernoulli", "logits"): (D.Bernoulli, lambda logits: dict(probs=torch.sigmoid(logits))),
    ("categorical", "logits"): (D.Categorical, lambda logits: dict(probs=torch.softmax(logits, -1))),
    ("dirichlet", "softplus_concentration"): (D.Dirichlet, lambda raw_concentration: dict(
        concentration=F.softplus(raw_concentration))),
    ("weibull", "log_scale_concentration"): (D.Weibull, lambda log_scale, log_concentration: dict(
        scale=torch.exp(log_scale), concentration=torch.exp(log_concentration))),
}


@pytest.mark.parametrize("key", list(_ORACLE_MAPS), ids=lambda k: "-".join(k))
def test_parametrization_maps_match_an_independent_oracle(key):
    d = symelig.derive(*key)
    args = moderate_arguments(d, np.random.default_rng(5), size=4)
    torch_class, to_torch = _ORACLE_MAPS[key]
    theta = {n: torch.tensor(np.asarray(args[n], dtype=np.float64), requires_grad=True) for n in d.parameters}
    x = torch.tensor(np.asarray(args["x"])) if key[0] == "categorical" else torch.tensor(np.asarray(args["x"], dtype=np.float64))
    log_p = torch_class(**to_torch(**theta), validate_args=False).log_prob(x)
    log_p.sum().backward()
    np.testing.assert_allclose(d.log_prob(**args), log_p.detach().numpy(), rtol=1e-10)
    e = d.eligibility(**args)
    for name in d.parameters:
        np.testing.assert_allclose(e[name], theta[name].grad.numpy(), rtol=1e-8, atol=1e-12, err_msg=name)


def test_hessian_matches_torch_autograd(entry):
    """∂² log p from the generated hessian kernel against torch.autograd.functional.hessian of
    torch.distributions' log_prob (through the same parametrization map)."""
    d = symelig.derive(entry.family, entry.param)
    family = d.symbolic.family
    if family.torch is None:
        pytest.skip(f"{family.name} has no torch.distributions counterpart")
    if any(c is symelig.constraints.simplex for c in d.symbolic.parametrization.parameters.values()):
        pytest.skip("torch renormalizes probs: its Hessian is not the one of free simplex coordinates")
    from symelig.emit.second_order import supported

    if not supported(d.second_order):
        pytest.skip(f"no second-order kernels for {family.name}'s vector parameters (math printed only)")
    rng = np.random.default_rng(12)
    size = 4
    args = moderate_arguments(d, rng, size=size)
    if family.name == "multinomial":
        args["total_count"] = np.asarray(6)
        args["x"] = rng.multinomial(6, np.full(size, 1 / size))
    shapes = [np.shape(args[n]) for n in d.parameters]
    flat = torch.tensor(np.concatenate([np.ravel(np.asarray(args[n], dtype=np.float64)) for n in d.parameters]))
    extra = {n: int(args[n]) if family.name == "multinomial" else torch.tensor(np.asarray(args[n], dtype=np.float64)) for n in family.arguments}
    x = torch.tensor(args["x"]) if family.value is symelig.constraints.category else torch.tensor(np.asarray(args["x"], dtype=np.float64))

    def log_prob(vector):
        theta, start = {}, 0
        for name, shape in zip(d.parameters, shapes):
            count = int(np.prod(shape))
            theta[name] = vector[start:start + count].reshape(shape)
            start += count
        distribution = _torch_distribution(family, **_canonical(d, theta, size), **extra, validate_args=False)
        return distribution.log_prob(x)

    theirs = torch.autograd.functional.hessian(log_prob, flat).numpy()
    ours = d.hessian(**args)
    ours = d.second_order_kernels.dense(ours) if isinstance(ours, dict) else ours
    rtol = 1e-5 if family.name == "von_mises" else 1e-8  # torch's polynomial log I0
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=1e-9)


@pytest.mark.parametrize("param,to_scale", [("scale", lambda v: v), ("log_scale", torch.exp), ("softplus_scale", F.softplus)])
def test_diag_normal_matches_independent_normal_autograd(param, to_scale):
    """diag_normal is ``Independent(Normal(loc, scale), 1)``: log p and both eligibilities agree
    with autograd to 1e-10 relative on random batches of several widths (oracle map typed here)."""
    d = symelig.derive("diag_normal", param)
    rng = np.random.default_rng(21)
    for width in (1, 3, 8):
        loc = 3 * rng.normal(size=(200, width))
        theta = rng.uniform(0.05, 5, size=loc.shape) if param == "scale" else rng.normal(size=loc.shape)
        x = loc + 3 * rng.normal(size=loc.shape)
        tl, tt = (torch.tensor(v, requires_grad=True) for v in (loc, theta))
        log_p = D.Independent(D.Normal(tl, to_scale(tt)), 1).log_prob(torch.tensor(x))
        log_p.sum().backward()
        name = d.parameters[1]
        np.testing.assert_allclose(d.log_prob(x, loc=loc, **{name: theta}), log_p.detach().numpy(), rtol=1e-10)
        e = d.eligibility(x, loc=loc, **{name: theta})
        np.testing.assert_allclose(e["loc"], tl.grad.numpy(), rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(e[name], tt.grad.numpy(), rtol=1e-10, atol=1e-13)


def _squashed_normal(loc, scale, low, high):
    """SAC's policy as torch writes it: ``Independent(TransformedDistribution(Normal, [Tanh,
    Affine]), 1)``; cache_size=1 keeps the u a sample came from, so log_prob is evaluated at u
    itself (not at atanh of the action)."""
    c, b = (high - low) / 2, (high + low) / 2
    transforms = [D.TanhTransform(cache_size=1), D.AffineTransform(b, c, cache_size=1)]
    return D.Independent(D.TransformedDistribution(D.Normal(loc, scale), transforms), 1)


def tanh_normal_disagreement(param, to_scale, family, seed=22):
    """The largest relative difference of log p and the eligibilities from torch autograd on
    random batches of widths 1, 3 and 8 (float64), with random bounds; the action is made
    from u by torch's own transforms.  u stays in (−3, 3): there the float64 action determines
    u to ~1e-14, so tanh_normal (which recovers u from a) is compared at the same point."""
    d = symelig.derive(family, param)
    rng = np.random.default_rng(seed)
    worst = 0.0
    for width in (1, 3, 8):
        loc = rng.uniform(-2, 2, size=(300, width))
        theta = rng.uniform(0.05, 5, size=loc.shape) if param == "scale" else rng.normal(size=loc.shape)
        low = rng.uniform(-3, 0.5, size=loc.shape)
        high = low + rng.uniform(0.1, 4, size=loc.shape)
        u = rng.uniform(-3, 3, size=loc.shape)
        tl, tt = (torch.tensor(v, requires_grad=True) for v in (loc, theta))
        dist = _squashed_normal(tl, to_scale(tt), torch.tensor(low), torch.tensor(high))
        tu = torch.tensor(u)
        action = dist.base_dist.transforms[1](dist.base_dist.transforms[0](tu))
        log_p = dist.log_prob(action)  # cached: at u
        log_p.sum().backward()
        sample = u if family == "tanh_normal_presquash" else action.detach().numpy()
        name = d.parameters[1]
        args = dict(low=low, high=high, loc=loc, **{name: theta})
        e = d.eligibility(sample, **args)
        pairs = [(d.log_prob(sample, **args), log_p.detach().numpy()), (e["loc"], tl.grad.numpy()), (e[name], tt.grad.numpy())]
        for ours, theirs in pairs:
            worst = max(worst, float(np.max(np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-3))))
    return worst


@pytest.mark.parametrize("family", ["tanh_normal", "tanh_normal_presquash"])
@pytest.mark.parametrize("param,to_scale", [("scale", lambda v: v), ("log_scale", torch.exp), ("softplus_scale", F.softplus)])
def test_tanh_normal_matches_transformed_distribution_autograd(param, to_scale, family):
    """tanh_normal (sample = the action) and tanh_normal_presquash (sample = u) against torch's
    TransformedDistribution(Normal, [TanhTransform, AffineTransform]) at u: log p with the exact
    Jacobian and both eligibilities to 1e-10 relative (relative to max(|value|, 1e-3))."""
    assert tanh_normal_disagreement(param, to_scale, family) < 1e-10


@pytest.mark.parametrize("param,to_scale", [("scale", lambda v: v), ("log_scale", torch.exp), ("softplus_scale", F.softplus)])
def test_normal_mixture_matches_mixture_same_family_autograd(param, to_scale):
    """normal_mixture is ``MixtureSameFamily(Categorical(logits=z), Normal(loc, scale))``: log p and
    the three eligibilities agree with autograd to 1e-10 relative on random batches of 1, 3 and 8
    components (oracle maps typed here), x drawn from the mixture and from far outside it."""
    d = symelig.derive("normal_mixture", param)
    rng = np.random.default_rng(31)
    name = d.parameters[2]
    for width in (1, 3, 8):
        logits, loc = 2 * rng.normal(size=(300, width)), 3 * rng.normal(size=(300, width))
        theta = rng.uniform(0.05, 5, size=loc.shape) if param == "scale" else rng.normal(size=loc.shape)
        scale = to_scale(torch.tensor(theta)).numpy()
        pick = np.array([rng.choice(width, p=np.exp(z - z.max()) / np.exp(z - z.max()).sum()) for z in logits])
        near = np.take_along_axis(loc + scale * rng.normal(size=loc.shape), pick[:, None], -1)[:, 0]
        x = np.where(np.arange(300) % 5 == 0, 40 * rng.normal(size=300), near)
        tz, tl, tt = (torch.tensor(v, requires_grad=True) for v in (logits, loc, theta))
        mixture = D.MixtureSameFamily(D.Categorical(logits=tz), D.Normal(tl, to_scale(tt)))
        log_p = mixture.log_prob(torch.tensor(x))
        log_p.sum().backward()
        args = {"logits": logits, "loc": loc, name: theta}
        np.testing.assert_allclose(d.log_prob(x, **args), log_p.detach().numpy(), rtol=1e-10)
        e = d.eligibility(x, **args)
        for label, theirs in (("logits", tz.grad), ("loc", tl.grad), (name, tt.grad)):
            ours = e[label]
            np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-10, atol=1e-13, err_msg=f"{label}, {width} components")
