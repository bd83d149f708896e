"""Leaderboard: validation against good and bad submissions, ranking, escaping, a real browser."""

import copy
import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from benchmarks.board import entries, ranking, rendering, schema, validation
from benchmarks.safe_io import atomic_write_json
from benchmarks.savings.metrics import iqm, savings
from benchmarks.savings.presets import PRESETS
from benchmarks.savings.results import make_result
from savings_gym.envs import task_params

QUICK = PRESETS["quick"]
ROOT = Path(__file__).resolve().parent.parent


def _result(
    name="gru-test",
    networks=6,
    ff2_rate=0.3,
    seed=0,
    description="a test entry",
    link="https://x.org",
    unmeasured=0,
    preset=QUICK,
):
    """A result (of the quick preset unless told) whose curves decay at known rates; the last
    ``unmeasured`` networks' FF2 errors start on the other side of the line (no first error to
    remove: no FF2 fit and no fit-free measure)."""
    rng = np.random.default_rng(seed)
    curves = {}
    for phase, n in preset.batches.items():
        if not n:
            continue
        x = np.arange(n) / 5
        rate = {"FF1": 0.1, "FF2": ff2_rate}.get(phase, 0.2)
        jitter = np.exp(rng.normal(0, 0.6, networks))  # networks learn at different rates
        curves[phase] = np.stack([0.03 * np.exp(-rate * j * x) + rng.normal(0, 1e-3, n) for j in jitter])
        if phase == "FF2" and unmeasured:
            curves[phase][networks - unmeasured :] = -0.03 * np.exp(-rate * x)
    config = {
        "agent": "gru",
        "hidden": 16,
        "networks": networks,
        "seed": seed,
        "seeds": [seed],
        "env_id": "ArmCurlField-v0",
        "preset": asdict(preset),
    }
    return make_result(config, curves, 1.0, {"name": name, "description": description, "link": link})


def _write(folder, result):
    atomic_write_json(folder / "result.json", result)
    return folder


@pytest.fixture
def good(tmp_path):
    return _write(tmp_path / "good", _result())


def test_a_good_submission_validates(good):
    entry = entries.validate(good)
    assert entry.name == "gru-test" and len(entry.fingerprint) == 64


def _tampered(tmp_path, change):
    result = _result()
    change(result)
    return _write(tmp_path / "bad", result)


def _default_task(**overrides):
    return asdict(task_params("ArmCurlField-v0", **overrides))


def test_a_result_on_the_default_task_constants_validates(tmp_path):
    result = _result()
    result["config"]["task"] = _default_task()
    entries.validate(_write(tmp_path / "ok", result))


BAD = {
    "missing field": (lambda r: r.pop("metrics"), "(top level)", "'metrics' is a required property"),
    "wrong type": (lambda r: r["config"].__setitem__("networks", "six"), "config/networks", "not of type"),
    "wrong format": (lambda r: r.__setitem__("format", "csv"), "format", "savings-gym-result"),
    "unknown submission key": (lambda r: r["submission"].__setitem__("score", 1), "submission", "Additional"),
    "tampered metrics": (
        lambda r: r["metrics"]["aggregate"]["savings_index"].__setitem__("estimate", 9.0),
        "metrics/aggregate/savings_index/estimate",
        "the curves give",
    ),
    "tampered per-network rate": (
        lambda r: r["metrics"]["per_network"]["rate_FF2"].__setitem__(0, 1.0),
        "metrics/per_network/rate_FF2/0",
        "reported",
    ),
    "too few seeds": (
        lambda r: r.update(_result(networks=3)),
        "config/networks",
        "at least 5",
    ),
    "NaN": (lambda r: r["learning_curves"]["FF1"][2].__setitem__(4, float("nan")), "learning_curves/FF1", "NaN"),
    "wrong env version": (
        lambda r: r["config"].__setitem__("env_id", "ArmCurlField-v1"),
        "config/env_id",
        "unknown env id or version",
    ),
    "unknown preset": (
        lambda r: r["config"]["preset"].__setitem__("name", "turbo"),
        "config/preset/name",
        "unknown preset",
    ),
    "preset lengths changed": (
        lambda r: r["config"]["preset"]["batches"].__setitem__("FF1", 99),
        "config/preset/batches",
        "differ",
    ),
    "short curves": (
        lambda r: r["learning_curves"].__setitem__("NF2", [c[:-1] for c in r["learning_curves"]["NF2"]]),
        "learning_curves/NF2",
        "batches",
    ),
    "task constants changed": (
        lambda r: r["config"].__setitem__("task", _default_task(test_go_time=0.44)),
        "config/task",
        "test_go_time 0.44 (default 0.1)",
    ),
    "task not an object": (lambda r: r["config"].__setitem__("task", [1]), "config/task", "must be an object"),
    "ragged curves": (lambda r: r["learning_curves"]["FF2"][1].pop(), "learning_curves/FF2", "different lengths"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_submissions_are_rejected_naming_file_field_and_reason(tmp_path, case):
    change, field, reason = BAD[case]
    folder = _tampered(tmp_path, change)
    with pytest.raises(schema.SubmissionError) as error:
        entries.validate(folder)
    problems = error.value.problems
    assert any(f.endswith("result.json") and fld == field and reason in why for f, fld, why in problems), problems


def test_unreadable_missing_and_oversized_files(tmp_path, monkeypatch):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "result.json").write_text("{not json")
    with pytest.raises(schema.SubmissionError, match="not valid JSON"):
        entries.validate(tmp_path / "junk")
    with pytest.raises(schema.SubmissionError, match="no such file"):
        entries.validate(tmp_path / "nothing")
    big = _write(tmp_path / "big", _result())
    monkeypatch.setattr(validation, "MAX_BYTES", 1000)
    with pytest.raises(schema.SubmissionError, match="over the 1000-byte limit"):
        entries.validate(big)


def test_duplicates_of_an_entry_are_rejected(tmp_path, good):
    board = tmp_path / "board"
    added = entries.add(good, board)
    assert (added / "result.json").exists()
    copy_folder = tmp_path / "renamed"
    result = json.loads((good / "result.json").read_text())
    result["submission"]["name"] = "same curves, other name"
    _write(copy_folder, result)
    with pytest.raises(schema.SubmissionError, match="duplicates the entry"):
        entries.validate(copy_folder, board)


def _with_latent(folder, projections, tamper=None):
    from benchmarks.savings.latent import persistence

    latent = {"networks": len(projections), "per_network": {"projection_NF2": list(projections)}}
    latent["persistence_NF2"] = persistence(np.asarray(projections))
    if tamper:
        tamper(latent)
    atomic_write_json(folder / "latent" / "latent.json", latent)
    return folder


def test_persistence_is_recomputed_copied_and_shown(tmp_path, good):
    _with_latent(good, [0.3, 0.5, 0.4, 0.6, 0.2, 0.45])
    board = tmp_path / "board"
    added = entries.add(good, board)
    assert (added / "latent" / "latent.json").exists()
    row = ranking.rows(entries.entries(board))[0]
    assert row["persistence_NF2"][0] == pytest.approx(0.40833, abs=1e-4)
    assert "+0.41 [" in rendering.render_markdown([row])
    plain = _write(tmp_path / "plain", _result("no-latent", seed=9))
    no_latent = ranking.rows([entries.validate(plain)])
    assert np.isnan(no_latent[0]["persistence_NF2"]).all() and "| - |" in rendering.render_markdown(no_latent)


@pytest.mark.parametrize(
    "projections, tamper, field",
    [
        ([0.3, 0.5, 0.4, 0.6, 0.2, 0.45], lambda d: d["persistence_NF2"].__setitem__("estimate", 0.9), "estimate"),
        ([0.3, 0.5, 0.4], None, "needs 6 finite values"),
        ([0.3, 0.5, 0.4, 0.6, 0.2, float("nan")], None, "needs 6 finite values"),
        ([0.3, 0.5, 0.4, 0.6, 0.2, 0.45], lambda d: d.pop("per_network"), "not a savings-gym latent result"),
    ],
)
def test_bad_latent_results_are_rejected(good, projections, tamper, field):
    _with_latent(good, projections, tamper)
    with pytest.raises(schema.SubmissionError, match=field) as error:
        entries.validate(good)
    assert "latent.json" in str(error.value)


def test_ranking_iqm_and_shared_ranks(tmp_path):
    board = tmp_path / "board"
    for name, rate, seed in (("strong", 0.4, 1), ("weak", 0.05, 2), ("strong-too", 0.41, 3)):
        entries.add(_write(tmp_path / name, _result(name, ff2_rate=rate, seed=seed)), board)
    table = ranking.rows(entries.entries(board))
    assert [r["name"] for r in table][-1] == "weak"
    ranks = {r["name"]: r["rank"] for r in table}
    assert ranks["strong"] == ranks["strong-too"] == "1=" and not ranks["weak"].startswith("1")
    index = table[0]["savings_index"]
    assert index[1] <= index[0] <= index[2]


def test_entries_with_too_few_measured_networks_are_listed_but_not_ranked(tmp_path):
    board = tmp_path / "board"
    for name, rate, seed, unmeasured in (
        ("strong", 0.4, 1, 0),
        ("weak", 0.05, 2, 0),
        ("three-fits", 2.0, 3, 3),  # the most savings, but on 3 of 6 networks
        ("five-fits", 0.2, 4, 1),
    ):
        entries.add(_write(tmp_path / name, _result(name, ff2_rate=rate, seed=seed, unmeasured=unmeasured)), board)
    table = ranking.rows(entries.entries(board))
    by_name = {r["name"]: r for r in table}
    assert [r["name"] for r in table][-1] == "three-fits"
    assert by_name["three-fits"]["rank"] == "unranked" and by_name["three-fits"]["measured"] == 3
    assert by_name["five-fits"]["ranked"] and by_name["five-fits"]["measured"] == 5
    # three-fits' CI lies above all the others': counted, it would push every rank down by one
    assert [by_name[n]["rank"] for n in ("strong", "five-fits", "weak")] == ["1=", "1=", "2="]
    markdown = rendering.render_markdown(table)
    assert "| unranked | three-fits | quick | 6 (3) |" in markdown and "| 6 (6) |" in markdown
    assert "fewer than 5 networks with a value are listed unranked" in markdown
    by_name["three-fits"]["fits"] = 1
    assert rendering._cell(by_name["three-fits"], "savings_index").endswith("(one fit)")


def test_iqm_ignores_outlying_seeds():
    assert iqm(np.array([0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 100.0])) == pytest.approx(1.0)


INJECTION = '<script>alert("x")</script><img src=x onerror=alert(1)>|'


def test_strings_from_submissions_come_out_escaped(tmp_path):
    board = tmp_path / "board"
    entries.add(_write(tmp_path / "evil", _result(INJECTION, description=INJECTION, link="javascript:alert(1)")), board)
    markdown, page = rendering.render(board, tmp_path / "site")
    text = page.read_text()
    assert "<script>alert" not in text and "<img src=x" not in text and 'href="javascript' not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
    assert "<script>" not in markdown.read_text() and "\\|" in markdown.read_text()


def _chromium():
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    return webdriver.Chrome(options=options, service=service)


def test_the_page_sorts_in_a_real_headless_chromium(tmp_path):
    if not shutil.which("chromium"):
        pytest.fail("Debian's chromium is needed (.ci/run installs chromium and chromium-driver)")
    board = tmp_path / "board"
    for name, rate, seed, unmeasured in (
        ("alpha", 0.4, 1, 0),
        ("beta", 0.05, 2, 0),
        ("gamma", 0.2, 3, 0),
        ("delta", 1, 4, 4),
    ):
        entries.add(_write(tmp_path / name, _result(name, ff2_rate=rate, seed=seed, unmeasured=unmeasured)), board)
    _, page = rendering.render(board, tmp_path / "site")
    from selenium.webdriver.common.by import By

    driver = _chromium()
    try:
        driver.get(page.as_uri())

        def names():
            return [
                row.find_elements(By.TAG_NAME, "td")[1].text
                for row in driver.find_elements(By.CSS_SELECTOR, "#board tbody tr")
            ]

        before = names()
        assert sorted(before) == ["alpha", "beta", "delta", "gamma"] and before[-2:] == ["beta", "delta"]
        header = driver.find_elements(By.CSS_SELECTOR, "#board th")[1]  # "entry"
        header.click()
        assert names() == ["alpha", "beta", "delta", "gamma"]
        header.click()
        assert names() == ["gamma", "delta", "beta", "alpha"]
        assert len(driver.find_elements(By.CSS_SELECTOR, "img[src^='data:image/png']")) == 4
        rank = driver.find_elements(By.CSS_SELECTOR, "#board th")[0]
        rank.click()  # ascending: the unranked entry sorts after every rank
        assert names()[-1] == "delta"
        rank.click()
        assert names()[0] == "delta"
    finally:
        driver.quit()


def test_cli_validate_add_render_and_report(tmp_path, good, capsys):
    from benchmarks.cli import main

    board = tmp_path / "board"
    board.mkdir()
    assert main(["leaderboard", "validate", str(good), "--board", str(board)]) == 0
    assert main(["leaderboard", "add", str(good), "--board", str(board)]) == 0
    assert main(["leaderboard", "render", "--board", str(board), "--out", str(tmp_path / "site")]) == 0
    assert (
        "ok: gru-test, 6 networks (competence not recorded), 6 measured by early_reduction_difference, "
        "6 with both fits: ranked" in (capsys.readouterr().out)
    )
    few = _write(tmp_path / "few", _result("few-fits", unmeasured=2))
    assert main(["leaderboard", "validate", str(few)]) == 0
    assert "4 measured by early_reduction_difference, 4 with both fits: listed unranked (fewer than 5)" in (
        capsys.readouterr().out
    )
    bad = _tampered(tmp_path, lambda r: r["config"].__setitem__("env_id", "Nope-v0"))
    with pytest.raises(SystemExit):
        main(["leaderboard", "validate", str(bad)])
    assert "config/env_id" in capsys.readouterr().err


SMOKE = PRESETS["smoke"]


def test_format_only_checks_a_smoke_run_and_says_why_the_board_would_refuse_it(tmp_path, capsys):
    from benchmarks.cli import main

    smoke = _write(tmp_path / "smoke", _result(preset=SMOKE))
    with pytest.raises(SystemExit):  # the board takes no smoke runs, and says how to check the format
        main(["leaderboard", "validate", str(smoke)])
    assert "preset 'smoke' is not for results" in (err := capsys.readouterr().err) and "--format-only" in err
    assert main(["leaderboard", "validate", "--format-only", str(smoke)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("format ok: gru-test, 6 networks") and "schema, types, units, hashes" in out
    assert "the board would still refuse it: config/preset/name: preset 'smoke' is not for results" in out
    entry = entries.validate_format(_write(tmp_path / "few", _result(networks=3, preset=SMOKE)))
    assert [where for _, where, _ in entry.refused] == ["config/preset/name", "config/networks"]


def test_format_only_passes_a_board_run_and_checks_changed_presets_against_their_recorded_lengths(tmp_path, capsys):
    from benchmarks.cli import main

    good = _write(tmp_path / "good", _result())
    assert main(["leaderboard", "validate", "--format-only", str(good)]) == 0
    assert "none refuses this run: on the board it would be ranked" in capsys.readouterr().out
    changed = SMOKE.with_changes({"NF1": 3}, lr=0.01)  # --phases NF1=3 --lr 0.01: smoke:lr=0.01,NF1=3
    result = _result(preset=changed)
    result["config"]["task"] = _default_task(test_go_time=0.44)  # --task
    entry = entries.validate_format(_write(tmp_path / "changed", result))
    assert {where for _, where, _ in entry.refused} == {"config/preset/name", "config/task"}
    result["learning_curves"]["NF1"] = [row[:-1] for row in result["learning_curves"]["NF1"]]
    with pytest.raises(schema.SubmissionError, match="learning_curves/NF1: 2 batches, preset 'smoke:lr=0.01"):
        entries.validate_format(_write(tmp_path / "short", result))


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda r: r.__setitem__("units", {**r["units"], "lengths": "cm"}), "units"),
        (
            lambda r: r["config"].__setitem__("learner", {"module": "m.py", "class": "C", "source_sha256": "abc"}),
            "config/learner/source_sha256",
        ),
        (lambda r: r["config"].__setitem__("pretrained_sha256", "not a hash"), "config/pretrained_sha256"),
        (
            lambda r: r["config"].__setitem__(
                "learner", {"module": "m.py", "class": "C", "source_sha256": "a" * 64, "lr": "fast"}
            ),
            "config/learner/lr",
        ),
    ],
)
def test_format_only_still_refuses_bad_units_and_hashes(tmp_path, change, field):
    result = _result(preset=SMOKE)
    change(result)
    with pytest.raises(schema.SubmissionError) as error:
        entries.validate_format(_write(tmp_path / "bad", result))
    assert any(where == field for _, where, _ in error.value.problems), error.value.problems


def test_units_written_before_reaches_per_update_are_still_read(tmp_path):
    result = _result(preset=SMOKE)
    result["units"] = dict(schema.UNITS_BEFORE_UPDATES)  # the shipped entries': rates per window of batches
    assert "curve_points" not in result["units"]
    entries.validate_format(_write(tmp_path / "old", result))


def test_add_sets_name_description_and_link_in_the_copy(tmp_path, good, capsys):
    from benchmarks.cli import main

    board = tmp_path / "board"
    args = ["leaderboard", "add", str(good), "--board", str(board), "--name", "my agent", "--link", "https://a.org"]
    assert main([*args, "--description", "GRU, lr 0.01"]) == 0
    (folder,) = board.iterdir()
    assert folder.name.startswith("my-agent-")
    entry = entries.validate(folder, board)  # the copy is still a valid submission
    assert entry.result["submission"] | {"code_version": ""} == {
        "name": "my agent",
        "description": "GRU, lr 0.01",
        "link": "https://a.org",
        "code_version": "",
    }
    assert json.loads((good / "result.json").read_text())["submission"]["name"] == "gru-test"  # source untouched
    with pytest.raises(schema.SubmissionError, match="submission/name") as error:
        entries.add(good, tmp_path / "other", {"name": "x" * 81})
    assert "too long" in str(error.value) and not (tmp_path / "other").exists()


def test_report_page(tmp_path, good):
    from benchmarks.board.report import write_report

    page = write_report(good).read_text()
    assert "gru-test" in page and "savings index" in page and "not analysed" in page
    _with_latent(good, [0.3, 0.5, 0.4, 0.6, 0.2, 0.45])
    assert "NF2 projection on the uniform shift" in write_report(good).read_text()
    with pytest.raises(ValueError, match="no result.json"):
        write_report(tmp_path)


def test_schema_is_itself_valid():
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(schema.SUBMISSION_SCHEMA)
    copy.deepcopy(schema.SUBMISSION_SCHEMA)


def _with_practice_control(result):
    """A copy of a result as if its run had had the practice control (FFC learns like FF1)."""
    result = copy.deepcopy(result)
    batches = result["config"]["preset"]["batches"]
    curves = {p: np.asarray(c) for p, c in result["learning_curves"].items()}
    curves["NFC"] = np.zeros((len(curves["FF1"]), batches["NF1"] + batches["FF1"] + batches["NF2"]))
    curves["FFC"] = curves["FF1"] * 1.01
    result["learning_curves"] = {p: c.tolist() for p, c in curves.items()}
    result["config"]["practice_control"] = True
    result["metrics"] = json.loads(json.dumps(savings(curves)))
    return result


def test_practice_control_curves_are_validated_against_the_config(tmp_path):
    controlled = _with_practice_control(_result())
    entry = entries.validate(_write(tmp_path / "ok", controlled))
    assert "practice_control" in entry.metrics
    unflagged = copy.deepcopy(controlled)
    unflagged["config"]["practice_control"] = False
    with pytest.raises(schema.SubmissionError, match="learning_curves/FFC: a practice-control curve"):
        entries.validate(_write(tmp_path / "unflagged", unflagged))
    missing = copy.deepcopy(controlled)
    del missing["learning_curves"]["FFC"]
    with pytest.raises(schema.SubmissionError, match="learning_curves/FFC: missing: the run had the practice"):
        entries.validate(_write(tmp_path / "missing", missing))
    short = copy.deepcopy(controlled)
    short["learning_curves"]["NFC"] = [row[:-1] for row in short["learning_curves"]["NFC"]]
    with pytest.raises(schema.SubmissionError, match="learning_curves/NFC: .* batches, preset 'quick' has"):
        entries.validate(_write(tmp_path / "short", short))
    forged = copy.deepcopy(controlled)
    forged["metrics"]["practice_control"]["aggregate"]["savings_index_vs_control"]["estimate"] = 3.0
    with pytest.raises(schema.SubmissionError, match="metrics/practice_control"):
        entries.validate(_write(tmp_path / "forged", forged))


def test_a_retired_preset_validates_and_is_marked(tmp_path):
    from benchmarks.savings.presets import RETIRED_PRESETS, find_preset

    old = RETIRED_PRESETS[0]
    assert find_preset(old.name, old.batches) == (old, True)
    assert find_preset("quick", QUICK.batches) == (QUICK, False)
    assert find_preset("quick", {**QUICK.batches, "FF1": 7}) == (None, False)
    shipped = entries.validate(ROOT / "leaderboard" / "gru-128-9a15f50a")  # run before NF1 existed
    assert shipped.retired_preset and shipped.result["config"]["preset"]["batches"] == old.batches
    weak_new = entries.validate(_write(tmp_path / "new", _result(ff2_rate=0.05)))
    table = ranking.rows([shipped, weak_new])
    assert {row["name"]: row["preset"] for row in table} == {"gru-128": "quick (retired)", "gru-test": "quick"}
    # ranked within its preset: the current preset's entry comes first and is first of its own
    assert [(row["name"], row["rank"]) for row in table] == [("gru-test", "1"), ("gru-128", "1")]


def test_the_board_ranks_by_the_most_reliable_measure_of_the_shipped_entries():
    reliability = ranking.split_half_reliability(entries.entries(ROOT / "leaderboard"))
    best = max(reliability, key=lambda m: reliability[m]["reliability"])
    assert best == schema.RANK_MEASURE, reliability
    assert reliability["savings_index"]["reliability"] < reliability[best]["reliability"] - 0.2
    assert all(r["networks"] >= 60 for r in reliability.values())
