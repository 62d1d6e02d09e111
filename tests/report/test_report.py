"""The HTML report and its figures, built from a small hand-made study directory (no training).

The fixture writes what the study runner writes: ``study.json``, ``results.parquet``/``.csv``, one
``selections/<name>/b{budget:.2f}_s{seed}.json`` per run, the training labels, the flipped indices
and a confidence trajectory. ``hard`` is made clearly worse than random at 10% and better above.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from datadiet.report import build_report
from datadiet.report.figures import figure_to_png
from datadiet.report.html import load_study
from datadiet.report.study_plots import plot_performance
from datadiet.selection.base import Selection

N, BUDGETS, SEEDS = 240, (0.1, 0.3, 0.5), (0, 1, 2)
ODD = "<b>proto</b>"  # a selection name that must stay literal text in the report
SPECS = [
    {
        "name": "hard",
        "algorithm": "hard_to_learn",
        "representation": "dynamics",
        "balance": None,
        "calibrate": None,
        "params": {},
    },
    {
        "name": ODD,
        "algorithm": "prototypicality",
        "representation": "hidden",
        "balance": "stratified",
        "calibrate": None,
        "params": {"n_clusters": 4, "keep": "hard"},
    },
    {
        "name": "hard_cal",
        "algorithm": "hard_to_learn",
        "representation": "dynamics",
        "balance": None,
        "calibrate": 0.5,
        "params": {},
    },
]
OFFSET = {
    "random": lambda b, s: 0.0,
    "hard": lambda b, s: (-0.2 - 0.01 * s) if b < 0.2 else 0.05 + 0.01 * s,
    ODD: lambda b, s: 0.01 * (s - 1),
    "hard_cal": lambda b, s: 0.02 + 0.005 * s,
}
EXPECTED_FIGURES = {
    "performance_test",
    "performance_ood",
    "overlap",  # the budget shown first (nearest 30%); the others are overlap_<budget>
    "overlap_0_10",
    "overlap_0_50",
    "label_distribution",
    "data_map",
    "costs",
    "label_noise",
}


def _pick(name: str, k: int, seed: int, mean_conf: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng([seed, len(name), k])
    if name.startswith("hard"):
        hardest = np.argsort(mean_conf, kind="stable")
        if name == "hard":
            return np.sort(hardest[:k])
        head = hardest[: k // 2]
        return np.sort(
            np.concatenate([head, rng.choice(np.setdiff1d(np.arange(N), head), k - k // 2, replace=False)])
        )
    return np.sort(rng.choice(N, k, replace=False))


def _result_rows(name: str, budget: float, k: int, seed: int, kept_flipped: float) -> list[dict]:
    rows = []
    for split, shift in (("test", 0.0), ("ood", -0.1)):
        for metric, scale in (("accuracy", 1.0), ("macro_f1", 0.9)):
            value = scale * (0.5 + 0.3 * budget + 0.01 * seed) + shift + OFFSET[name](budget, seed)
            rows.append(
                {
                    "cell": f"{name}|{budget}|{seed}",
                    "selection": name,
                    "algorithm": "x",
                    "representation": "y",
                    "balance": None,
                    "calibrate": np.nan,
                    "budget": budget,
                    "k": k,
                    "seed": seed,
                    "split": split,
                    "metric": metric,
                    "value": value,
                    "kind": "selection",
                    "train_seconds": 0.5 + 10 * budget,
                    "select_seconds": 0.2,
                    "n_flipped_kept": kept_flipped,
                }
            )
    return rows


def _reference_rows() -> list[dict]:
    rows = []
    for name, budget, seed, value in (
        ("full", 1.0, 0, 0.9),
        ("full", 1.0, 1, 0.92),
        ("dummy", np.nan, -1, 0.2),
    ):
        for split in ("test", "ood"):
            for metric in ("accuracy", "macro_f1"):
                rows.append(
                    {
                        "cell": f"{name}|{seed}",
                        "selection": name,
                        "budget": budget,
                        "k": N if name == "full" else 0,
                        "seed": seed,
                        "split": split,
                        "metric": metric,
                        "value": value,
                        "kind": "baseline",
                        "train_seconds": 10.0 if name == "full" else 0.0,
                        "select_seconds": 0.0,
                        "n_flipped_kept": 30.0 if name == "full" else np.nan,
                    }
                )
    return rows


def make_study(
    directory: Path, *, noise: bool = True, confidence: bool = True, seeds: tuple[int, ...] = SEEDS
) -> Path:
    """Write a complete study directory by hand (``seeds``: the seeds of every budgeted selection)."""
    rng = np.random.default_rng(0)
    labels = rng.choice(3, size=N, p=[0.6, 0.3, 0.1])
    conf = rng.beta(2.0, 1.2, size=(N, 6))
    flipped = np.sort(rng.choice(N, 30, replace=False))
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / "labels.train.npy", labels)
    np.save(directory / "flipped.npy", flipped)
    np.save(directory / "confidence.npy", conf)
    rows = _reference_rows()
    for name in ["random", *(spec["name"] for spec in SPECS)]:
        for budget in BUDGETS:
            k = int(budget * N)
            for seed in seeds:
                indices = _pick(name, k, seed, conf.mean(axis=1))
                selection = Selection(indices, meta={"algorithm": name, "seed": seed, "n_examples": N})
                path = directory / "selections" / name / f"b{budget:.2f}_s{seed}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(selection.to_dict()))
                rows += _result_rows(
                    name, budget, k, seed, float(np.isin(indices, flipped).sum()) if noise else np.nan
                )
    results = pd.DataFrame(rows)
    results.to_parquet(directory / "results.parquet")
    results.to_csv(directory / "results.csv", index=False)
    meta = {
        "name": "tiny & <study>",
        "task": "classification",
        "label_names": ["earn", "acq", "crude & oil"],
        "n_train": N,
        "budgets": list(BUDGETS),
        "seeds": list(seeds),
        "metrics": ["accuracy", "macro_f1"],
        "primary_metric": "macro_f1",
        "costs": {"reference_seconds": 2.0, "represent_seconds": 1.0, "full_train_seconds": 10.0},
        "label_noise": {"fraction": 0.125, "n_flipped": 30} if noise else None,
        "selections": SPECS,
        "paths": {
            "labels": "labels.train.npy",
            "flipped": "flipped.npy" if noise else None,
            "confidence": "confidence.npy" if confidence else None,
        },
    }
    (directory / "study.json").write_text(json.dumps(meta))
    return directory


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, str]:
    study = make_study(tmp_path_factory.mktemp("study") / "study")
    path = build_report(study)
    return study, path.read_text(encoding="utf-8")


def _row_html(page: str, name: str) -> str:
    match = re.search(rf'<tr><th scope="row">{re.escape(name)}</th>.*?</tr>', page, flags=re.S)
    assert match, f"no table row for {name!r}"
    return match.group(0)


def test_every_figure_is_written_as_a_png(report):
    study, _ = report
    written = {p.stem: p.read_bytes() for p in (study / "figures").glob("*.png")}
    assert set(written) == EXPECTED_FIGURES
    for payload in written.values():
        assert payload.startswith(b"\x89PNG\r\n\x1a\n") and len(payload) > 5000


def test_report_embeds_each_figure_once_as_a_data_uri(report):
    study, page = report
    embedded = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == len(EXPECTED_FIGURES) == page.count("<img ")
    written = sorted(p.read_bytes() for p in (study / "figures").glob("*.png"))
    assert sorted(base64.b64decode(data) for data in embedded) == written


def test_report_is_self_contained(report):
    _, page = report
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert "<script" not in page and "http://" not in page and "https://" not in page


def _performance_table(page: str) -> str:
    return page[page.index('id="performance_test"') : page.index('id="performance_ood"')]


def test_report_table_with_three_seeds_shows_intervals_but_colours_no_cell(report):
    _, page = report
    table = _performance_table(page)
    hard = _row_html(table, "hard")
    assert 'class="num worse"' not in table and 'class="num better"' not in table
    # diffs -0.20, -0.21, -0.22 (seeds 0..2): -0.21 ± t_{0.975, 2} 4.3027 · 0.01 / sqrt(3) = ± 0.0248
    assert "Δ -0.210 [-0.235, -0.185]" in hard
    assert _row_html(table, "random").count('class="num base"') == 3
    assert "high-compression failure" in table and "calibrat" in table
    assert "all training data: 0.910 ± 0.014" in table
    caption = re.search(r'<p class="caption">macro_f1 on test:.*?</p>', table, flags=re.S).group(0)
    assert "mean ± std over 3 seeds" in caption and "its paired t 95% interval" in caption
    assert "at least 5 seeds are paired" in caption and "here at most 3 are" in caption
    assert "no cell is coloured" in caption and "bootstrap" not in page


def test_report_table_with_five_seeds_flags_the_worse_and_better_cells(tmp_path):
    page = build_report(make_study(tmp_path / "s", seeds=(0, 1, 2, 3, 4))).read_text(encoding="utf-8")
    table = _performance_table(page)
    hard = _row_html(table, "hard")
    assert hard.count('class="num worse"') == 1  # only at 10%
    assert hard.count('class="num better"') == 2
    assert 'class="num worse"' not in _row_html(table, "&lt;b&gt;proto&lt;/b&gt;")
    assert "mean ± std over 5 seeds" in table and "no cell is coloured" not in table


def test_report_caption_counts_the_seeds_of_the_data(tmp_path):
    page = build_report(make_study(tmp_path / "s", seeds=(0, 1))).read_text(encoding="utf-8")
    table = _performance_table(page)
    assert "mean ± std over 2 seeds" in table and "here at most 2 are" in table
    assert "3 seeds" not in page and 'class="num worse"' not in table


def test_overlap_section_has_one_heatmap_per_budget_and_a_selector(report):
    _, page = report
    section = page[page.index('<section id="overlap">') : page.index('<section id="label_distribution">')]
    picks = re.findall(r'<input type="radio" name="overlap_budget" id="(\w+)_pick"( checked)?>', section)
    assert [key for key, _ in picks] == ["overlap_0_10", "overlap", "overlap_0_50"]  # budget order
    assert [key for key, checked in picks if checked] == ["overlap"]  # 30%, nearest 0.3, shown first
    assert section.count("<img ") == len(BUDGETS)
    for key, label, k in (("overlap_0_10", "10%", 24), ("overlap", "30%", 72), ("overlap_0_50", "50%", 120)):
        panel = re.search(rf'<div class="panel" id="{key}_panel">.*?</div>', section, flags=re.S).group(0)
        assert f"budget {label}, seed 0; random expectation k/N = {k}/{N} = {k / N:.3f}." in panel
        assert f"#{key}_pick:checked ~ #{key}_panel" in page  # the CSS that shows it when picked
    assert ".budgets > .panel { display: none; }" in page


def test_names_from_the_data_are_escaped(report):
    _, page = report
    assert ODD not in page and "<study>" not in page and "crude & oil" not in page
    assert "&lt;b&gt;proto&lt;/b&gt;" in page and "tiny &amp; &lt;study&gt;" in page
    assert "crude &amp; oil" in page


def test_a_selection_named_script_is_written_as_text_not_as_a_tag(tmp_path):
    study = make_study(tmp_path / "s")
    meta = json.loads((study / "study.json").read_text())
    meta["name"] = "<script>alert(1)</script>"
    meta["selections"][2] = {**meta["selections"][2], "name": "<script>", "params": {"x": "</code><i>"}}
    (study / "study.json").write_text(json.dumps(meta))
    results = pd.read_parquet(study / "results.parquet").replace({"selection": {"hard_cal": "<script>"}})
    results.to_parquet(study / "results.parquet")
    (study / "selections" / "hard_cal").rename(study / "selections" / "_script_")
    page = build_report(study, highlight="<script>").read_text(encoding="utf-8")  # 3 seeds: no colour
    assert "<script" not in page and "<i>" not in page
    assert "<title>datadiet report: &lt;script&gt;alert(1)&lt;/script&gt;</title>" in page
    assert "<td>&lt;script&gt;</td><td>hard_to_learn</td>" in page  # the study's selection table
    assert _row_html(page, "&lt;script&gt;").count('class="num "') == 3  # the performance table
    assert "Highlighted: &lt;script&gt;, 30%, seed 0." in page  # the data map note
    assert "&lt;/code&gt;&lt;i&gt;" in page  # inside the params JSON


def test_every_template_is_shipped_as_package_data():
    import datadiet.report

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["datadiet.report"]
    package = Path(datadiet.report.__file__).parent
    shipped = {path for pattern in patterns for path in package.glob(pattern)}
    templates = set((package / "templates").iterdir())
    assert templates and templates == shipped


def test_report_without_label_noise_or_confidence_skips_those_sections(tmp_path):
    study = make_study(tmp_path / "s", noise=False, confidence=False)
    (study / "results.parquet").unlink()  # the CSV alone is enough
    page = build_report(study, overlap_budget=0.1).read_text(encoding="utf-8")
    stems = {p.stem for p in (study / "figures").glob("*.png")}
    overlaps = {"overlap", "overlap_0_30", "overlap_0_50"}  # 10% is shown first, so it is overlap.png
    assert (
        stems == (EXPECTED_FIGURES - {"label_noise", "data_map", "overlap_0_10", "overlap_0_50"}) | overlaps
    )
    assert re.search(r'id="overlap_pick" checked><label for="overlap_pick">10%</label>', page)
    assert page.count("<img ") == len(stems) and 'id="label_noise"' not in page
    assert "budget 10%, seed 0" in page


def test_bad_study_directories_raise_and_name_the_problem(tmp_path):
    study = make_study(tmp_path / "s")
    with pytest.raises(ValueError, match="one of the study budgets"):
        build_report(study, overlap_budget=0.2)
    with pytest.raises(
        ValueError, match=r"Unknown highlight selection 'nope'. Available: \['random', 'hard'"
    ):
        build_report(study, highlight="nope")
    pd.read_parquet(study / "results.parquet").drop(columns=["k", "train_seconds"]).to_parquet(
        study / "results.parquet"
    )
    with pytest.raises(ValueError, match=r"missing the columns \['k', 'train_seconds'\]"):
        load_study(study)


def test_dollar_signs_in_names_do_not_break_the_figures(report):
    study, _ = report
    results = pd.read_parquet(study / "results.parquet").replace({"selection": {"hard": "cost $5 $x$"}})
    assert figure_to_png(plot_performance(results, metrics=["macro_f1"])).startswith(b"\x89PNG")


# --- browser ----------------------------------------------------------------------------------
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but Chromium is missing: install it (apt-get install -y chromium).")
        pytest.skip("Chromium is not installed (apt-get install -y chromium).")
    return found


def _run_chromium(browser: str, profile: Path, *args: str) -> str:
    command = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _png_size(payload: bytes) -> tuple[int, int]:
    return int.from_bytes(payload[16:20], "big"), int.from_bytes(payload[20:24], "big")


def test_report_renders_in_headless_chromium(report, tmp_path):
    browser = _chromium()
    study, _ = report
    shot = tmp_path / "shot.png"
    _run_chromium(
        browser,
        tmp_path / "profile",
        f"--screenshot={shot}",
        "--window-size=1280,4000",
        (study / "report.html").as_uri(),
    )
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (4000, 1280)
    ink = (pixels < 0.9).any(axis=2)
    rows = np.flatnonzero(ink.any(axis=1))
    assert ink.mean() > 0.03 and rows.max() > 3000  # figures fill the page, far below an empty one's top
    colour = (pixels.max(axis=2) - pixels.min(axis=2)) > 0.25
    assert colour.mean() > 0.005  # the coloured plots were drawn, not only text


def test_every_embedded_image_decodes_in_chromium(report, tmp_path):
    browser = _chromium()
    _, page = report
    tags = re.findall(r'<img src="data:image/png;base64,[^"]+"', page)
    wrapper = tmp_path / "decode.html"
    wrapper.write_text(
        "<!DOCTYPE html><html><body>"
        + "".join(f"{tag}>" for tag in tags)
        + "<script>window.addEventListener('load', () => { const out = document.createElement('pre');"
        " out.id = 'decoded'; out.textContent = Array.from(document.images).map("
        "i => i.complete + ':' + i.naturalWidth + 'x' + i.naturalHeight).join(' ');"
        " document.body.appendChild(out); });</script></body></html>",
        encoding="utf-8",
    )
    dom = _run_chromium(
        browser,
        tmp_path / "profile",
        "--run-all-compositor-stages-before-draw",
        "--virtual-time-budget=5000",
        "--dump-dom",
        wrapper.as_uri(),
    )
    decoded = re.search(r'<pre id="decoded">([^<]*)</pre>', dom)
    assert decoded, dom[-500:]
    expected = [_png_size(base64.b64decode(tag.split(",", 1)[1])) for tag in tags]
    assert decoded.group(1).split() == [f"true:{w}x{h}" for w, h in expected]


def test_the_agreement_table_summarises_the_saved_selections_by_hand():
    """a@r and b@r share 3 of 4 (same representation: 0.75); a@r and a@s share 1 of 4 (same algorithm)."""
    from types import SimpleNamespace

    from datadiet.report.html import agreement_rows

    saved = {("a@r", 0): [0, 1, 2, 3], ("b@r", 0): [0, 1, 2, 4], ("a@s", 0): [0, 5, 6, 7]}
    specs = [{"name": "random", "algorithm": "random", "representation": ""}] + [
        {"name": name, "algorithm": name.split("@")[0], "representation": name.split("@")[1]}
        for name, _ in saved
    ]
    study = SimpleNamespace(
        meta={"selections": specs, "budgets": [0.4], "seeds": [0], "n_train": 10},
        selection=lambda name, budget, seed: np.array(saved[name, seed]) if (name, seed) in saved else None,
    )
    rows = agreement_rows(study)  # type: ignore[arg-type]
    assert rows == [{"budget": "40%", "k/N": "0.400", "same representation": "0.750 (1 pairs)",
                     "same algorithm": "0.250 (1 pairs)", "seed stability": "n/a"}]  # fmt: skip
    assert agreement_rows(SimpleNamespace(meta={**study.meta, "selections": specs[:2]},
                                          selection=study.selection)) == []  # fmt: skip
