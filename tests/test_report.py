"""The HTML report, opened in a real headless browser (Debian's chromium through chromedriver)."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from galaxymorph.evaluation import evaluate
from galaxymorph.prediction.layout import arrow_schema, posterior_table
from galaxymorph.report import build_report
from galaxymorph.schema import Question, Schema

TWO = Schema("two", [Question("shape", ("round", "disk")), Question("bar", ("yes", "no"), after=("shape_disk",))])
N = 24
SCALES = {"shape": 0.5, "bar": 2.0}  # the predictions are a calibrated model's


def _browser():
    """A headless chromium driver, or skip (fail in CI, where .ci/run installs chromium)."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    try:
        from selenium import webdriver
    except ImportError:
        webdriver = None
    if not (chromium and driver and webdriver):
        reason = "needs chromium, chromedriver (apt-get install chromium chromium-driver) and selenium"
        if os.environ.get("GALAXYMORPH_REQUIRE_REAL_DATA") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download anything
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1400,1000"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(driver))


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(0)
    conc = rng.uniform(1, 30, (N, TWO.n_answers, 3))
    ids = [f"gal{i:02d}" for i in range(N)]
    locs = []
    for i in range(N):
        path = folder / f"{ids[i]}.png"
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
        locs.append(str(path))
    locs[-1] = str(folder / "missing.png")  # a lost image shows a placeholder, not a broken page
    layout = arrow_schema(TWO, 3, {"calibration": SCALES})
    pq.write_table(posterior_table(ids, conc, locs, TWO, layout), folder / "preds.parquet")
    votes = pd.DataFrame(rng.integers(0, 12, (N, TWO.n_answers)).astype(float), columns=TWO.answers).assign(id_str=ids)
    evaluate(folder / "preds.parquet", votes, out=folder / "eval")
    out = build_report(folder / "preds.parquet", folder / "report.html", evaluation=folder / "eval")
    return out, pd.read_parquet(folder / "preds.parquet")


def test_report_is_self_contained(report):
    out, _ = report
    page = out.read_text()
    assert "http://" not in page and "https://" not in page  # no CDN, opens offline
    assert page.count("data:image/png;base64,") >= N - 1 + 3  # gallery images and plots inlined
    assert "<script src" not in page and "<link" not in page
    assert "<title>galaxymorph report: preds.parquet</title>" in page


def test_report_shows_the_coverage_before_and_after_calibration(report):
    import json

    from galaxymorph.report.html import _metrics_html

    out, _ = report
    page = out.read_text()
    result = json.loads((out.parent / "eval" / "evaluation.json").read_text())
    before, after = result["uncalibrated"], result

    def moved(b, a, level):
        return f"{b['coverage'][level]:.3f} &rarr; {a['coverage'][level]:.3f}"

    assert f"90% predictive intervals {moved(before['overall'], after['overall'], '0.9')}" in page
    assert f"50% ones {moved(before['overall'], after['overall'], '0.5')}" in page
    for name in TWO.question_names:
        for level in ("0.5", "0.9"):
            assert f"<td>{moved(before['questions'][name], after['questions'][name], level)}</td>" in page
    assert "reliability.png" in result["plots"] and "alt='reliability'" in page
    del result["uncalibrated"], result["calibration_scales"]  # as for a model without calibration
    assert "&rarr;" not in _metrics_html(result) and "50% coverage" not in _metrics_html(result)


def test_an_evaluation_of_other_predictions_is_refused_naming_both(report, tmp_path):
    import json

    out, _ = report
    folder = out.parent
    fewer = tmp_path / "fewer.parquet"  # 14 of the 24 evaluated galaxies, from the same model
    pq.write_table(pq.read_table(folder / "preds.parquet").slice(0, 14), fewer)
    with pytest.raises(ValueError) as refused:
        build_report(fewer, tmp_path / "r.html", evaluation=folder / "eval")
    message = str(refused.value)
    assert f"--evaluation {folder / 'eval'} was made from {(folder / 'preds.parquet').resolve()} ({N} rows, " in message
    assert f"not from --predictions {fewer.resolve()} (14 rows, " in message
    assert f"galaxymorph evaluate --predictions {fewer} --catalog CATALOGUE --out NEW_FOLDER" in message
    assert "\n" not in message and not (tmp_path / "r.html").exists()
    # one written before evaluations recorded their predictions cannot be checked: refused too
    (tmp_path / "old").mkdir()
    saved = json.loads((folder / "eval" / "evaluation.json").read_text())
    del saved["made_from"]
    (tmp_path / "old" / "evaluation.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="does not record which predictions it was made from"):
        build_report(folder / "preds.parquet", tmp_path / "r.html", evaluation=tmp_path / "old")


def test_report_renders_images_and_filters_in_chromium(report, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    out, frame = report
    browser = _browser()
    try:
        browser.get(out.as_uri())
        cards = browser.find_elements(By.CSS_SELECTOR, "#gallery .card")
        assert len(cards) == N
        loaded = browser.execute_script(
            "return Array.from(document.querySelectorAll('#gallery img')).filter(i => i.complete && i.naturalWidth > 0).length")
        assert loaded == N - 1
        assert len(browser.find_elements(By.CSS_SELECTOR, "#gallery .noimg")) == 1
        plots = browser.execute_script("return Array.from(document.querySelectorAll('#plots img')).map(i => i.naturalWidth)")
        assert len(plots) == 4 and min(plots) > 0
        assert "Metrics" in browser.find_element(By.ID, "metrics").text

        # filter: bar_yes >= 0.5, sorted by that fraction
        Select(browser.find_element(By.ID, "answer")).select_by_visible_text("bar_yes")
        minimum = browser.find_element(By.ID, "min")
        minimum.clear()
        minimum.send_keys("0.5")
        expected = frame.loc[frame["bar_yes_fraction"] >= 0.5].sort_values("bar_yes_fraction", ascending=False)
        shown = [c.get_attribute("data-id") for c in browser.find_elements(By.CSS_SELECTOR, "#gallery .card")]
        assert 0 < len(shown) < N
        assert shown == expected["id_str"].tolist()
        assert browser.find_element(By.ID, "count").text == f"{len(shown)} of {N} galaxies"

        # "most certain" sorts by the chosen answer's interval width, narrowest first
        Select(browser.find_element(By.ID, "sort")).select_by_value("certain")
        width = (expected["bar_yes_q95"] - expected["bar_yes_q05"]).round(3)
        shown = [c.get_attribute("data-id") for c in browser.find_elements(By.CSS_SELECTOR, "#gallery .card")]
        by_id = dict(zip(expected["id_str"], width))
        shown_widths = [by_id[i] for i in shown]
        assert sorted(shown) == sorted(by_id)
        assert shown_widths == sorted(shown_widths)

        # a second answer narrows further ("barred spirals"): bar_yes >= 0.5 and shape_disk >= 0.5
        Select(browser.find_element(By.ID, "answer2")).select_by_visible_text("shape_disk")
        both = expected.loc[expected["shape_disk_fraction"] >= 0.5, "id_str"]
        shown = [c.get_attribute("data-id") for c in browser.find_elements(By.CSS_SELECTOR, "#gallery .card")]
        assert sorted(shown) == sorted(both) and 0 < len(shown) < len(expected)

        # the view is a shareable link
        assert "answer=bar_yes" in browser.current_url and "sort=certain" in browser.current_url
        assert "answer2=shape_disk" in browser.current_url
        browser.save_screenshot(str(tmp_path / "report.png"))
        assert (tmp_path / "report.png").stat().st_size > 10_000
    finally:
        browser.quit()


def test_gallery_reads_only_its_rows_and_takes_shard_predictions_without_images(tmp_path):
    from galaxymorph.report.html import _read_rows

    rng = np.random.default_rng(1)
    ids = [f"g{i:03d}" for i in range(100)]
    # predictions from shards have no file_loc: the gallery shows placeholders, it does not fail
    table = posterior_table(ids, rng.uniform(1, 30, (100, TWO.n_answers, 2)), [None] * 100, TWO, arrow_schema(TWO, 2, {}))
    pq.write_table(table, tmp_path / "preds.parquet", row_group_size=9)
    positions = np.array([0, 8, 9, 50, 99])
    columns = ["id_str", "bar_yes_fraction"]
    pd.testing.assert_frame_equal(_read_rows(tmp_path / "preds.parquet", positions, columns),
                                  pd.read_parquet(tmp_path / "preds.parquet", columns=columns).iloc[positions].reset_index(drop=True))
    page = build_report(tmp_path / "preds.parquet", tmp_path / "report.html", gallery=7).read_text()
    shown = [i for i in ids if f'"id": "{i}"' in page]
    assert len(shown) == 7 and '"image": null' in page


def test_a_report_made_in_another_folder_finds_the_images_of_a_catalogue_with_relative_paths(tmp_path, monkeypatch):
    """Predictions record absolute image paths (they recorded sim/images/... relative to where predict ran)."""
    import torch

    from galaxymorph.data.images import MissingImagesWarning
    from galaxymorph.data.transforms import Preprocessing
    from galaxymorph.models import GalaxyModel, save_model
    from galaxymorph.prediction import predict

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    (work / "sim" / "images").mkdir(parents=True)
    elsewhere.mkdir()
    rng = np.random.default_rng(2)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(work / "sim" / "images" / f"g{i}.png")
    pd.DataFrame({"id_str": [f"g{i}" for i in range(4)], "file_loc": [f"images/g{i}.png" for i in range(4)]}).to_csv(
        work / "sim" / "catalogue.csv", index=False)
    torch.manual_seed(0)
    prep = Preprocessing(stored_size=20, image_size=16, channels=3).to_dict()
    save_model(GalaxyModel(TWO, arch="test_resnet", preprocessing=prep), work / "run")
    monkeypatch.chdir(work)
    predict("run", "preds.parquet", catalogue="sim/catalogue.csv", samples=2, progress=False)
    monkeypatch.chdir(elsewhere)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingImagesWarning)
        page = build_report(work / "preds.parquet", "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and '"image": null' not in page


def test_the_report_warns_in_one_line_how_many_images_it_cannot_find(report, tmp_path):
    from typer.testing import CliRunner

    from galaxymorph.cli import app

    out, _ = report
    result = CliRunner().invoke(app, ["report", "--predictions", str(out.parent / "preds.parquet"),
                                      "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    warned = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert warned == [f"warning: 1 of {N} galaxies' images not found (e.g. {out.parent / 'missing.png'}); pass a "
                      "catalogue that names them (--catalog, with id_str and file_loc)"]
