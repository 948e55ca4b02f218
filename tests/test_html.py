"""The browsable catalog (``symelig html``): MathML that parses and names no SymPy internals, a site
whose links resolve, writing that is all or nothing, a plot drawn from the kernels, and, where
Chromium is installed, every formula rendered by a real browser."""
from __future__ import annotations

import dataclasses
import inspect
import os
import re
import shutil
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from sympy import (
    DiracDelta, Function, Indexed, IndexedBase, KroneckerDelta, Piecewise, Sum, Symbol, besseli, loggamma, polygamma,
)

import symelig
from symelig import functions, site
from symelig.cli import main
from symelig.emit import steps
from symelig.emit.mathml import NAMESPACE, block, mathml
from symelig.explanation import explain
from symelig.family import K, i, j

import chromium

MATH = re.compile(r"<math\b.*?</math>", re.S)
M = f"{{{NAMESPACE}}}"
# the names a formula may show as a multi-letter identifier: operator names, not SymPy classes
# (and the bounds of a squashed action, printed by their PyTorch names low and high)
WORDS = {"log", "softmax", "sigmoid", "softplus", "sin", "cos", "sign", "stirlerr", "bd", "Pr", "otherwise", "low", "high"}
SITE_ENTRIES = ("categorical:logits", "student_t:scale", "multinomial:probs", "beta:concentration")


def run(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def parsed(markup: str) -> ET.Element:
    """A ``math`` element parsed as XML (raises on markup that is not well-formed)."""
    return ET.fromstring(markup)


def words(element: ET.Element) -> set:
    return {(mi.text or "") for mi in element.iter(f"{M}mi") if len(mi.text or "") > 1}


# -- the printer ---------------------------------------------------------------------------------

x, a, b, c = (Symbol(n, positive=True) for n in "xabc")
z = IndexedBase("z")
SAMPLES = {  # one instance of every function symelig.functions defines
    "xlogy": functions.xlogy(x, a), "xdivy": functions.xdivy(x, a), "logfactorial": functions.logfactorial(x),
    "LogSumExp": functions.LogSumExp(z[i], i, K), "Softmax": functions.Softmax(z[i], i, K, j),
    "sigmoid": functions.sigmoid(a), "softplus": functions.softplus(a), "log_softplus": functions.log_softplus(a),
    "sigmoid_over_softplus": functions.sigmoid_over_softplus(a),
    "log_softplus_curvature": functions.log_softplus_curvature(a), "log_bessel_i0": functions.log_bessel_i0(a),
    "bessel_i1_i0": functions.bessel_i1_i0(a), "log1mexp": functions.log1mexp(-a), "log1pmx": functions.log1pmx(a),
    "gamma_difference": functions.gamma_difference(0, a, b, a + b, 1), "betaln": functions.betaln(a, b),
    "bd0": functions.bd0(x, a, x - a), "quotient": functions.quotient(a, b), "stirlerr": functions.stirlerr(a),
    "factorial_remainder": functions.factorial_remainder(a), "added_first": functions.added_first(a + b),
    "fms": functions.fms(a, b, c), "select": functions.select(x > 1, a, b),
    "SumExcept": functions.SumExcept(z[i], i, K, j), "SoftmaxExcept": functions.SoftmaxExcept(z[i], i, K, j),
    "log_abs": functions.log_abs(a - b), "masked": functions.masked(z[j], b),
    "LogSumExpRemaining": functions.LogSumExpRemaining(z[i], i, K, IndexedBase("x"), c),
    "SoftmaxRemaining": functions.SoftmaxRemaining(z[i], i, K, IndexedBase("x"), c, j),
    "LogSumExpBlock": functions.LogSumExpBlock(z[i], i, a, a + b - 1),
    "SoftmaxBlock": functions.SoftmaxBlock(z[i], i, a, a + b - 1, j),
    "log_ndtr_difference": functions.log_ndtr_difference(a, b, b - a),
    "normal_pdf_over_mass": functions.normal_pdf_over_mass(a, b, b - a),
}


def test_samples_cover_every_function_of_the_package():
    defined = {name for name, obj in vars(functions).items()
               if inspect.isclass(obj) and issubclass(obj, Function) and obj.__module__ == functions.__name__
               and not name.startswith("_")}
    assert defined == set(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_the_package_functions_print_as_notation_not_as_class_names(name):
    element = parsed(block(mathml(SAMPLES[name])))
    assert not words(element) - WORDS, f"{name} printed as {words(element) - WORDS}"
    assert name.lower() not in ET.tostring(element, encoding="unicode").lower() or name.lower() in WORDS


@pytest.mark.parametrize("expr,shows", [
    (KroneckerDelta(j, x), "δ"), (polygamma(0, a), "ψ"), (polygamma(1, a), "′"), (loggamma(a), "Γ"),
    (DiracDelta(x - a), "δ"), (besseli(0, a), "I"), (Sum(z[i], (i, 0, K - 1)), "∑"), (Indexed(z, j), "z"),
    (Piecewise((a, x > 1), (b, True)), "otherwise"), (a - x, "−"), (a * b, "\u2062"),
])
def test_sympy_notation(expr, shows):
    element = parsed(block(mathml(expr)))
    text = "".join(element.itertext())
    assert shows in text and "-" not in text  # a minus sign, never a hyphen
    assert not words(element) - WORDS


def test_positive_terms_come_first():
    mu = Symbol("mu")
    text = "".join(parsed(block(mathml((x - mu) ** 2))).itertext())
    assert text.index("x") < text.index("μ")


def test_every_entry_prints_well_formed_mathml(entry):
    """Every formula of every page (first order, second order, steps) parses as XML and shows no
    SymPy class name."""
    d = symelig.derive(entry.family, entry.param)
    s, so = d.symbolic, d.second_order
    exprs = [s.log_prob, *s.eligibility.values(), *(e for pair in s.definitions() for e in pair),
             *so.hessian.values(), *(so.fisher or {}).values(), *(so.null_space or {}).values()]
    markup = [block(mathml(e)) for e in exprs] + MATH.findall(steps.html(explain(d)))
    for m in markup:
        element = parsed(m)
        assert element.tag == f"{M}math"
        assert not words(element) - WORDS, words(element) - WORDS


# -- the site ------------------------------------------------------------------------------------

class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.text, self._skip = [], [], 0

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.links.append(dict(attrs)["href"])
        if tag in ("math", "style", "svg", "code"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("math", "style", "svg", "code"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)


def read(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("site") / "nested" / "site"   # parents are created
    site.write(folder, site.select(SITE_ENTRIES))
    return folder


def test_every_entry_has_a_page_and_every_link_resolves(built):
    expected = {f"{n.replace(':', '_')}.html" for n in SITE_ENTRIES} | {"index.html"}
    assert {p.name for p in built.iterdir()} == expected
    index = read(built / "index.html")
    assert set(index.links) == expected - {"index.html"}
    for page in built.iterdir():
        for link in read(page).links:
            assert (built / link).is_file(), f"{page.name} links to missing {link}"


def test_pages_hold_every_section_and_well_formed_mathml(built):
    for page in built.glob("*_*.html"):
        text = page.read_text(encoding="utf-8")
        for heading in ("Log-likelihood", "Eligibility", "Second order", "Step by step"):
            assert f"<h2>{heading}</h2>" in text, (page.name, heading)
        assert "Hessian of the log-likelihood" in text and "Fisher information" in text
        assert "<svg" in text and ("<polyline" in text or "<circle" in text)
        formulas = MATH.findall(text)
        assert len(formulas) > 10
        for m in formulas:
            assert not words(parsed(m)) - WORDS
        prose = "".join(read(page).text)
        assert "$" not in prose and "\\" not in prose and "&amp;" not in prose, page.name


def test_the_index_lists_family_parametrization_parameters_and_support(built):
    text = (built / "index.html").read_text(encoding="utf-8")
    for needle in ("student_t", "scale", "df, loc, scale", "(0, 1)", "ℕ<sup>K</sup>"):
        assert needle in text


def test_no_closed_form_fisher_is_said_plainly():
    d = symelig.derive("normal", "scale")

    class Stub:  # the entry as it would be if no closed-form Fisher information were found
        symbolic = d.symbolic
        second_order = dataclasses.replace(d.second_order, fisher=None, no_closed_form="E[e eᵀ] has no closed form")

    text = site._second_order(Stub(), "")
    assert "Fisher information: no closed form (E[e eᵀ] has no closed form)." in text
    assert "<msub><mi>F</mi>" not in text


def test_cli_writes_the_site_with_progress(capsys, tmp_path):
    target = tmp_path / "new" / "site"
    code, _, err = run(capsys, "html", "bernoulli", "-o", str(target))
    assert code == 0
    assert "[1/2] bernoulli --param probs" in err and "[2/2] bernoulli --param logits" in err
    assert {p.name for p in target.iterdir()} == {"index.html", "bernoulli_probs.html", "bernoulli_logits.html"}
    assert oct(target.stat().st_mode & 0o777) == oct(0o777 & ~_umask())
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["site"]  # no temporary folder left


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_an_error_midway_leaves_nothing(monkeypatch, tmp_path):
    pages = []

    def failing(d, entry):
        pages.append(entry)
        if len(pages) == 2:
            raise RuntimeError("interrupted")
        return "<!DOCTYPE html>"

    monkeypatch.setattr(site, "entry_page", failing)
    with pytest.raises(RuntimeError):
        site.write(tmp_path / "new" / "folders" / "site", site.select(["bernoulli"]))
    assert list(tmp_path.iterdir()) == []  # nor the folders made for it
    existing = tmp_path / "kept"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError):
        pages.clear()
        site.write(existing, site.select(["bernoulli"]))
    assert [p.name for p in existing.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]


def test_rewriting_replaces_its_own_pages_and_keeps_other_files(tmp_path):
    target = tmp_path / "site"
    site.write(target, site.select(["bernoulli"]))
    (target / "notes.html").write_text("<p>mine</p>")
    site.write(target, site.select(["geometric:probs"]))
    assert {p.name for p in target.iterdir()} == {"index.html", "geometric_probs.html", "notes.html"}


@pytest.mark.parametrize("make,message", [
    (lambda t: (t / "file").write_text("x") and t / "file", "exists and is not a folder"),
    (lambda t: (t / "file").write_text("x") and t / "file" / "site", "cannot create the folder"),
])
def test_a_bad_output_path_is_one_line(capsys, tmp_path, make, message):
    target = make(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run(capsys, "html", "bernoulli:logits", "-o", str(target))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_an_unknown_entry_is_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "html", "normal:bogus", "-o", str(tmp_path / "site"))
    assert code == 2 and "unknown parametrization 'bogus' of normal" in err and err.count("\n") == 1
    code, _, err = run(capsys, "html", "-o", "")
    assert code == 2 and "-o needs a folder name" in err
    assert list(tmp_path.iterdir()) == []


# -- the plot ------------------------------------------------------------------------------------

def test_the_plot_draws_the_kernels_eligibility():
    from symelig import plot

    d = symelig.derive("normal", "scale")
    curves = plot.curves(d)
    mu, sigma = plot.TYPICAL["real"], plot.TYPICAL["positive"]
    x = curves.x
    # hand formulas as the oracle: ∂/∂μ = (x − μ)/σ², ∂/∂σ = ((x − μ)² − σ²)/σ³
    np.testing.assert_allclose(curves.series["∂ log p/∂μ"], (x - mu) / sigma**2)
    np.testing.assert_allclose(curves.series["∂ log p/∂σ"], ((x - mu) ** 2 - sigma**2) / sigma**3)
    assert x.min() < mu - 2 * sigma and x.max() > mu + 2 * sigma  # the bulk of the density is shown
    svg = ET.fromstring(plot.svg(curves, "normal"))
    lines = svg.findall(".//{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 2
    for line in lines:
        points = np.array([p.split(",") for p in line.get("points").split()], dtype=float)
        assert (points[:, 0] >= 0).all() and (points[:, 0] <= plot.WIDTH).all()


def test_the_plot_of_a_vector_sample_runs_along_the_simplex():
    from symelig import plot

    d = symelig.derive("dirichlet", "concentration")
    curves = plot.curves(d)
    alpha = plot.TYPICAL_VECTOR["positive_vector"](2)
    t = curves.x
    from scipy.special import digamma

    expected = np.log(t) - digamma(alpha[0]) + digamma(alpha.sum())
    np.testing.assert_allclose(curves.series["∂ log p/∂α₀"], expected, rtol=1e-10)


# -- in a browser --------------------------------------------------------------------------------

CHECK = """(() => {
  const maths = [...document.querySelectorAll("math")];
  return {
    maths: maths.length,
    unrendered: maths.filter(m => !(m instanceof MathMLElement)
                                  || m.getBoundingClientRect().width <= 0
                                  || m.getBoundingClientRect().height <= 0).length,
    text: document.body.innerText,
    svgs: [...document.querySelectorAll("svg")].filter(s => s.getBoundingClientRect().width > 0).length,
  };
})()"""


@pytest.fixture(scope="module")
def browser():
    binary = chromium.find()
    if binary is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    opened = chromium.Browser(binary)
    yield opened
    opened.close()


def test_chromium_renders_every_formula(browser, built, tmp_path):
    for page in sorted(built.iterdir()):
        browser.open(page.as_uri())
        found = browser.evaluate(CHECK)
        assert browser.errors() == [], page.name
        if page.name != "index.html":
            assert found["maths"] > 10 and found["svgs"] == 1, page.name
        assert found["unrendered"] == 0, page.name
        for raw in ("$", "\\frac", "\\", "kroneckerdelta", "polygamma", "<math", "&InvisibleTimes;"):
            assert raw not in found["text"], (page.name, raw)
    browser.open((built / "student_t_scale.html").as_uri())
    shot = tmp_path / "student_t_scale.png"
    browser.screenshot(shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    if os.environ.get("SYMELIG_HTML_SCREENSHOT"):  # a copy for a report
        shutil.copy(shot, os.environ["SYMELIG_HTML_SCREENSHOT"])


def test_a_link_to_a_folder_is_written_through(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    site.write(tmp_path / "link", site.select(["bernoulli:logits"]))
    assert (tmp_path / "link").is_symlink()
    assert {p.name for p in real.iterdir()} == {"index.html", "bernoulli_logits.html"}
