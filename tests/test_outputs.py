"""Exported modules, LaTeX and the derivations/ folder."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import symelig
from symelig import pages
from symelig.cli import main

from conftest import random_arguments

ROOT = Path(__file__).resolve().parents[1]

_IMPORT_WITHOUT_SYMPY = """
import sys, json, importlib.util
sys.modules["sympy"] = None          # any import of sympy now fails
spec = importlib.util.spec_from_file_location("exported", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
import numpy as np
args = {k: np.array(v) for k, v in json.loads(sys.argv[2]).items()}
result = {"log_prob": module.log_prob(**args).tolist(),
          "eligibility": {k: v.tolist() for k, v in module.eligibility(**args).items()},
          "modules": sorted(m for m, v in sys.modules.items() if v is not None and m.split(".")[0] in ("sympy", "symelig"))}
print(json.dumps(result))
"""


def test_exported_module_imports_without_sympy(entry, tmp_path, capsys):
    target = tmp_path / f"{entry.family}_{entry.param}.py"
    with pytest.raises(SystemExit) as done:
        main(["export", entry.family, "--param", entry.param, "-o", str(target)])
    assert done.value.code == 0
    d = symelig.derive(entry.family, entry.param)
    args = random_arguments(d, np.random.default_rng(7))
    run = subprocess.run(
        [sys.executable, "-c", _IMPORT_WITHOUT_SYMPY, str(target), json.dumps({k: np.asarray(v).tolist() for k, v in args.items()})],
        capture_output=True, text=True, check=True,
    )
    result = json.loads(run.stdout)
    assert result["modules"] == []
    np.testing.assert_allclose(result["log_prob"], d.log_prob(**args), rtol=1e-12)
    for name, value in d.eligibility(**args).items():
        np.testing.assert_allclose(result["eligibility"][name], value, rtol=1e-12)


def test_export_all(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["export", "--all", "-o", str(tmp_path)])
    assert done.value.code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{e.family}_{e.param}.py" for e in symelig.catalog())


def test_exported_module_states_convention_and_imports_at_top(entry):
    source = symelig.derive(entry.family, entry.param).numpy_source
    assert "Williams" in source and "do not edit" in source
    header, _, body = source.partition('"""\n', )
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert imports[0] == "import numpy as np"
    assert all(source.index(line) < source.index("def log_prob") for line in imports)
    assert ("from scipy import special" in imports) == ("special." in source.split("def log_prob")[1])


def test_latex_fragment_reads_like_a_paper():
    tex = symelig.derive("categorical", "probs").latex_fragment()
    assert r"\frac{\delta_{j x}}{{p}_{x}} - \frac{1}{\sum_{i=0}^{K - 1} {p}_{i}}" in tex
    tex = symelig.derive("categorical", "logits").latex_fragment()
    assert r"\delta_{j x} - \operatorname{softmax}(z)_{j}" in tex and "softmax}(z)_j = e^{z_j}" in tex
    tex = symelig.derive("multinomial", "probs").latex_fragment()
    assert r"\log n!" in tex and r"{x}_{i} \log {p}_{i}" in tex


def test_latex_writes_special_functions_as_papers_do():
    tex = symelig.derive("gamma", "concentration_rate").latex_fragment()
    assert r"\log\Gamma\left(\alpha\right)" in tex and r"\psi\left(\alpha\right)" in tex
    assert "operatorname{loggamma}" not in tex and "polygamma" not in tex


def test_latex_names_the_distribution_apart_from_its_parameters():
    """probs is written p, so a probability mass is written Pr; the reparametrization is stated."""
    tex = symelig.derive("categorical", "probs").latex_fragment()
    assert r"\log \Pr(x \mid p)" in tex and r"{\pi}_{i} = \frac{{p}_{i}}{\sum_{k=0}^{K - 1} {p}_{k}}" in tex
    tex = symelig.derive("normal", "log_scale").latex_fragment()
    assert r"\log p(x \mid \mu, s)" in tex and r"$\sigma = e^{s}$" in tex


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (CI installs texlive-latex-base)")
def test_standalone_latex_compiles(entry, tmp_path):
    """The eligibility, Hessian and Fisher information of every entry compile."""
    source = tmp_path / "doc.tex"
    source.write_text(symelig.derive(entry.family, entry.param).latex(standalone=True, order=2))
    run = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", source.name],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 0


def test_derivations_folder_is_up_to_date():
    expected = pages.build()
    folder = ROOT / "derivations"
    present = {p.name for p in folder.iterdir() if p.is_file()}
    assert present == set(expected), "derivations/ lists other files than the catalog: run `make derivations`"
    stale = [name for name, text in expected.items() if (folder / name).read_text(encoding="utf-8") != text]
    assert not stale, f"derivations/ is stale ({', '.join(stale)}): run `make derivations`"


def test_derivations_index_covers_the_catalog():
    index = (ROOT / "derivations" / "README.md").read_text()
    for e in (e for e in symelig.catalog() if e.builtin):
        assert f"[{e.family}_{e.param}.md]" in index


def test_regenerating_pages_leaves_unrelated_files_alone(tmp_path, monkeypatch):
    from symelig import pages

    monkeypatch.setattr(pages, "build", lambda: {"normal_scale.md": "new\n", "README.md": "index\n"})
    (tmp_path / "notes.md").write_text("mine")
    (tmp_path / "normal_retired.py").write_text("old page")
    pages.write(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "normal_scale.md", "notes.md"]


def test_readme_catalog_lists_every_entry():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"{len([e for e in symelig.catalog() if e.builtin])} entries" in readme
    rows: dict = {}
    for line in readme.splitlines():
        if line.startswith("| "):
            rows[line.split("|")[1].strip()] = rows.get(line.split("|")[1].strip(), "") + line
    for e in (e for e in symelig.catalog() if e.builtin):
        assert f"`{e.param}`" in rows.get(e.family, ""), f"README's catalog table lacks {e.family} {e.param}"
        assert f"| {e.support} | {e.torch} |" in rows[e.family], f"README's row for {e.family} is stale"
