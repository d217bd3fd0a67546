"""``ddl compare``: the comparison report on short real runs, its numbers, and its rendering in headless Chromium."""

import base64
import json
import math
import re
import shutil
import subprocess
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

from ddl.config import TrainConfig
from ddl.loop.train import train
from ddl.report.compare import compare_runs
from ddl.report.comparison import build_report
from ddl.report.groups import make_groups
from ddl.report.runs import expand_run_dirs, read_run, read_runs
from ddl.report.stats import run_numbers
from ddl.report.verdict import verdict

FIGURES = ("curves", "final", "sigma_g", "sigma_w", "size_vs_norm", "contributions", "noise_time", "noise_sharpness",
           "clock")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """An SSGD and a DPSGD run (tiny, with noise measurements), each analysed with
    ``ddl.commands.analyze.analyze_run``."""
    from ddl.commands.analyze import analyze_run

    root = tmp_path_factory.mktemp("runs")
    out = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is as fast and does not suffer on a busy machine
    try:
        for algo in ("ssgd", "dpsgd"):
            cfg = TrainConfig(algo=algo, learners=4, batch_size=10, lr=0.2, epochs=3, train_per_class=30,
                              test_per_class=10, measure_noise=5, seed=0, progress=False,
                              out=str(root / algo))  # fmt: skip
            train(cfg)
            analyze_run(root / algo, progress=False)
            out[algo] = root / algo
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    html_path = compare_runs([runs["ssgd"], runs["dpsgd"]], out)
    assert html_path == out / "report.html"
    return out


class _Tables(HTMLParser):
    """Cells of ``<tr data-run=…>`` rows (per run) and ``<tr data-row=…>`` rows (per group), by ``data-key``."""

    def __init__(self):
        super().__init__()
        self.runs: dict[str, dict[str, str]] = {}
        self.rows: dict[str, list[str]] = {}
        self.imgs: list[str] = []
        self.links: list[str] = []
        self._row = None
        self._key = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for name in ("src", "href"):
            if name in a:
                self.links.append(a[name])
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag == "tr" and "data-run" in a:
            self._row = ("run", a["data-run"])
            self.runs[a["data-run"]] = {}
        elif tag == "tr" and "data-row" in a:
            self._row = ("group", a["data-row"])
            self.rows[a["data-row"]] = []
        elif tag == "td" and self._row is not None and "data-key" in a:
            self._key = a["data-key"]

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None
        if tag == "td":
            self._key = None

    def handle_data(self, data):
        if self._key is None or self._row is None:
            return
        kind, name = self._row
        if kind == "run":
            self.runs[name][self._key] = self.runs[name].get(self._key, "") + data
        else:
            self.rows[name].append(data)


def _value(cell: str) -> float:
    """A table cell as a number (percentages as fractions)."""
    cell = cell.strip().split(" ± ")[0]
    if cell.endswith("%"):
        return float(cell.rstrip(" %")) / 100
    return float(cell)


def _parse(path: Path) -> _Tables:
    p = _Tables()
    p.feed(path.read_text())
    return p


def test_report_files_and_numbers_match_the_runs(runs, report):
    for name in ("report.html", "report.md", "numbers.json", *(f"{f}.png" for f in FIGURES)):
        assert (report / name).is_file(), name
        assert (report / name).stat().st_size > 0, name
    tables = _parse(report / "report.html")
    md = (report / "report.md").read_text()
    for algo, run in runs.items():
        summary = json.loads((run / "summary.json").read_text())
        duality = json.loads((run / "analysis" / "duality.json").read_text())
        f = summary["final"]
        cells = tables.runs[str(run)]
        expect = {"steps": summary["steps"], "train_loss": f["train_loss"], "test_loss": f["test_loss"],
                  "train_err": 1 - f["train_acc"], "test_err": 1 - f["test_acc"], "true_gap": duality["true_gap"],
                  "pairwise_gap": duality["pairwise_gap"], "sharp_gap": duality["sharp_gap"],
                  "flat_gap": duality["flat_gap"], "n_sharp": duality["n_sharp"]}  # fmt: skip
        for key, want in expect.items():
            got = _value(cells[key])
            tol = 5e-5 if key.endswith("_err") else 1e-3 * abs(want) + 1e-12
            assert math.isclose(got, want, abs_tol=tol), (algo, key, got, want)
        # the Markdown's per-run row shows the same cells
        row = next(line for line in md.splitlines() if line.startswith(f"| {run.name} |"))
        for key in ("test_loss", "test_err", "pairwise_gap"):
            assert f" {cells[key]} |" in row, (key, row)
    # one seed per group: the group table's means are the runs' values
    nums = json.loads((report / "numbers.json").read_text())
    assert [g["label"] for g in nums["groups"]] == ["SSGD n=4 lr=0.2", "DPSGD n=4 ring lr=0.2"]
    test_err_cells = tables.rows["test_err"]
    for cell, algo in zip(test_err_cells, ("ssgd", "dpsgd")):
        f = json.loads((runs[algo] / "summary.json").read_text())["final"]
        assert math.isclose(_value(cell), 1 - f["test_acc"], abs_tol=5e-5)
    assert nums["missing"] == []
    assert any("DPSGD" in v for v in nums["verdict"])
    for r in nums["runs"]:  # the simulated clock's total, from each run's summary
        want = json.loads((Path(r["path"]) / "summary.json").read_text())["sim_time_s"]
        assert r["numbers"]["sim_time_s"] == pytest.approx(want, rel=1e-12) and want > 0
    # how the numbers were measured: the split rule is named, and no check failed
    assert nums["split"] == ("Sharp/flat split of every duality analysis: count 10 on σ_g: the 10 leading Hessian "
                             "directions (eigenvalue order).")
    assert nums["split"] in md and nums["checks"] == [] and "Checks that failed" not in md


def test_report_flags_failed_checks(runs, tmp_path):
    """A decomposition that does not add up, and noise eigenvalues that did not converge, are flagged."""
    bad = tmp_path / "dpsgd"
    shutil.copytree(runs["dpsgd"], bad)
    js = bad / "analysis" / "duality.json"
    doc = json.loads(js.read_text())
    doc["decomposition_error"] = 0.5 * max(abs(doc["pairwise_gap"]), 1e-3)
    js.write_text(json.dumps(doc))
    recs = [json.loads(x) for x in (bad / "noise.jsonl").read_text().splitlines()]
    recs[1].update(lanczos_converged=False, lanczos_rel_residual=0.03)
    (bad / "noise.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    rep = build_report([runs["ssgd"], bad], tmp_path / "rep")
    nums = json.loads(rep.numbers.read_text())
    assert len(nums["checks"]) == 2
    layer = doc["layer"]
    assert nums["checks"][0] == (f"⚠ {layer}: decomposition error (relative to the pair-wise gap) exceeds its "
                                 "threshold 1e-08 (or is not finite) — 1 run: dpsgd (worst value 0.5)")
    assert "did not converge in some measurements" in nums["checks"][1]
    assert nums["checks"][1].endswith(f"— 1 run: dpsgd (1 of {len(recs)}) (largest relative residual 0.03)")
    html, md = rep.html.read_text(), rep.markdown.read_text()
    assert '<section class="checks">' in html
    assert "Checks that failed" in html and "Checks that failed" in md
    assert html.index("Checks that failed") < html.index("<h2>Numbers")  # above the numbers it qualifies


def test_identical_notices_are_one_line(runs, tmp_path):
    """A notice shared by several runs is one line naming them all (not one line per run)."""
    from ddl.report.checks import check_lines
    from ddl.report.runs import read_run

    copies = []
    for name in ("a", "b", "c"):
        d = tmp_path / name
        shutil.copytree(runs["dpsgd"], d)
        recs = [json.loads(x) for x in (d / "noise.jsonl").read_text().splitlines()]
        for r in recs:
            r.update(reference_exact=False, reference_samples=100)
        (d / "noise.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        copies.append(read_run(d))
    lines = check_lines(copies)
    approx = [x for x in lines if "approximate full gradient" in x]
    assert approx == ["⚠ noise measured against an approximate full gradient and Hessian (100 samples, "
                      "--noise-samples), not the whole training set — all 3 runs"]
    mixed = check_lines(copies[:2] + [read_run(runs["ssgd"])])  # the exact run is not named
    assert [x for x in mixed if "approximate full gradient" in x][0].endswith("— 2 runs: a, b")


def test_html_is_self_contained(report):
    tables = _parse(report / "report.html")
    assert len(tables.imgs) == len(FIGURES)
    assert all(link.startswith("data:image/png;base64,") for link in tables.links), "external resource in report"
    embedded = {base64.b64decode(src.split(",", 1)[1]) for src in tables.imgs}
    assert embedded == {(report / f"{f}.png").read_bytes() for f in FIGURES}
    md = (report / "report.md").read_text()
    assert all(f"]({f}.png)" in md for f in FIGURES)


def test_cli_and_runs_missing_parts(runs, tmp_path, capsys):
    """A run without analysis and noise still gets its curves; the report says how to get the rest."""
    bare = tmp_path / "bare"
    shutil.copytree(runs["ssgd"], bare, ignore=shutil.ignore_patterns("analysis", "noise.jsonl"))
    out = tmp_path / "rep"
    from ddl.commands.cli import main

    assert main(["compare", str(bare), "--out", str(out), "--title", "bare run"]) == 0
    assert str(out / "report.html") in capsys.readouterr().out
    assert {p.stem for p in out.glob("*.png")} == {"curves", "final", "clock"}
    md = (out / "report.md").read_text()
    assert md.startswith("# bare run")
    assert f"ddl analyze {bare}" in md and "--measure-noise" in md
    assert "Not available" in (out / "report.html").read_text()


def test_compare_expands_a_directory_of_runs(runs, tmp_path, capsys):
    """A sweep's output (runs one level down, beside other files) stands for its runs, each taken once."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    for algo in ("dpsgd", "ssgd"):
        shutil.copytree(runs[algo], sweep / f"{algo}-run")
    (sweep / "results.csv").write_text("run,test_err\n")
    (sweep / "logs").mkdir()  # a directory that is not a run is skipped
    assert [p.name for p in expand_run_dirs([sweep])] == ["dpsgd-run", "ssgd-run"]
    assert [p.name for p in expand_run_dirs([sweep / "ssgd-run", sweep])] == ["ssgd-run", "dpsgd-run"]
    assert [r.config.algo for r in read_runs([sweep])] == ["dpsgd", "ssgd"]
    from ddl.commands.cli import main

    out = tmp_path / "rep"
    assert main(["compare", str(sweep), "--out", str(out)]) == 0
    assert "compared 2 runs in 2 configurations" in capsys.readouterr().out
    nums = json.loads((out / "numbers.json").read_text())
    assert sorted(r["path"] for r in nums["runs"]) == [str(sweep / "dpsgd-run"), str(sweep / "ssgd-run")]
    with pytest.raises(SystemExit) as e:  # a directory without runs: one line, exit 2
        main(["compare", str(sweep / "logs"), "--out", str(out)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "neither a run directory" in err and str(sweep / "logs") in err


def test_size_is_one_quantity(runs):
    """The size Σ_k σ_w,k: DualityResult.size, the report's ``sigma_w_sum`` and the sum of the saved σ_w agree."""
    for run in runs.values():
        data = read_run(run)
        with np.load(run / "analysis" / "duality.npz") as z:
            want = float(np.sum(z["sigma_w"]))
        assert data.duality.size == pytest.approx(want, rel=1e-12)
        assert run_numbers(data)["sigma_w_sum"] == data.duality.size
        assert json.loads((run / "analysis" / "duality.json").read_text())["size"] == pytest.approx(want, rel=1e-12)


def _fake_seed(src: Path, dst: Path, seed: int, test_acc: float) -> Path:
    """A copy of ``src`` posing as another seed with the given final test accuracy."""
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["seed"] = seed
    (dst / "config.json").write_text(json.dumps(cfg))
    s = json.loads((dst / "summary.json").read_text())
    s["final"]["test_acc"] = test_acc
    (dst / "summary.json").write_text(json.dumps(s))
    return dst


@pytest.mark.parametrize("accs, expect, full", [
    ({"ssgd": (0.90, 0.92), "dpsgd": (0.85, 0.86)}, "DPSGD does not beat SSGD here", True),
    ({"ssgd": (0.80, 0.81), "dpsgd": (0.90, 0.91)}, "DPSGD beats SSGD", False),
    ({"ssgd": (0.80, 0.90), "dpsgd": (0.84, 0.88)}, "DPSGD does not clearly beat SSGD", False),
])  # fmt: skip
def test_seeds_aggregate_and_verdict_is_honest(runs, tmp_path, accs, expect, full):
    dirs = [_fake_seed(runs[a], tmp_path / f"{a}-s{s}", s, acc) for a in accs for s, acc in enumerate(accs[a])]
    if full:  # the whole report once; the other cases only need the groups and the verdict
        rep = build_report(dirs, tmp_path / "rep")
        groups = rep.groups
        assert expect in rep.html.read_text() and expect in rep.markdown.read_text()
    else:
        groups = make_groups([read_run(d) for d in dirs])
    assert [len(g.runs) for g in groups] == [2, 2]
    for g, a in zip(groups, accs):
        errs = [1 - x for x in accs[a]]
        st = g.numbers()["test_err"]
        assert g.algo == a and g.seeds == [0, 1] and st["n"] == 2
        assert math.isclose(st["mean"], sum(errs) / 2, abs_tol=1e-12)
        assert math.isclose(st["std"], abs(errs[0] - errs[1]) / math.sqrt(2), abs_tol=1e-12)
    text = " ".join(verdict(groups))
    assert expect in text, text


# ---------------------------------------------------------------------------------------------------------
# rendering in headless Chromium
# ---------------------------------------------------------------------------------------------------------
# records JS errors (capture phase also sees <img> load errors) and, after the load event, every image's state
PROBE_HEAD = ("<script>window.__errors=[];window.addEventListener('error',function(e){window.__errors.push("
              "String(e.message||e.type)+' '+String((e.target&&e.target.src)||'').slice(0,40))},true);</script>")
PROBE_TAIL = ("<script>window.addEventListener('load',function(){var r=[];document.querySelectorAll('img')"
              ".forEach(function(i){r.push({ok:i.complete&&i.naturalWidth>0,w:i.naturalWidth,h:i.naturalHeight})});"
              "var p=document.createElement('pre');p.id='probe';p.textContent=JSON.stringify({images:r,"
              "errors:window.__errors});document.body.appendChild(p)});</script>")  # fmt: skip


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def _render(browser: str, html: str, tmp: Path) -> dict:
    """Load ``html`` (with the probe injected) in headless Chromium; the probe's JSON."""
    page = tmp / "page.html"
    page.write_text(html.replace("<head>", "<head>" + PROBE_HEAD, 1).replace("</body>", PROBE_TAIL + "</body>", 1))
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=5000",
           "--dump-dom", page.as_uri()]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="probe">(.*?)</pre>', r.stdout, re.S)
    assert m, f"chromium did not run the probe (rc {r.returncode}): {r.stderr[-2000:]}"
    return json.loads(unescape(m.group(1)))


def test_report_renders_in_headless_chromium(report, tmp_path):
    browser = _chromium()
    # a failure, not a skip: CI installs Chromium (`make chromium`, run by `make test`), so a missing browser
    # means a broken setup, and a skip would hide that the rendering is no longer tested
    assert browser is not None, "chromium is not installed: run `make chromium` (Debian: apt-get install chromium)"
    html = (report / "report.html").read_text()
    res = _render(browser, html, tmp_path)
    assert res["errors"] == []
    assert len(res["images"]) == len(FIGURES)
    assert all(i["ok"] and i["w"] > 100 and i["h"] > 100 for i in res["images"]), res["images"]
    # the probe must see a broken image: corrupt the first PNG's signature
    start = html.index("base64,") + len("base64,")
    broken = _render(browser, html[:start] + "AAAA" + html[start + 4 :], tmp_path)
    assert [i["ok"] for i in broken["images"]] == [False] + [True] * (len(FIGURES) - 1)
    assert broken["errors"], "the image's load error was not recorded"
