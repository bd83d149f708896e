"""The two-state (dual-rate) null model: its qualitative predictions, its fit, and the comparison."""

import numpy as np
import pytest

from benchmarks.savings.metrics import normalised_area
from benchmarks.savings.state_space import (
    PUBLISHED,
    TwoStateParams,
    fit_two_state,
    perturbation,
    relearning_beyond_model,
    simulate,
    two_state_report,
)
from savings_gym.schedule import gradual_schedule, paper_schedule, spontaneous_recovery_schedule


def test_perturbation_follows_the_schedule_batch_by_batch():
    f, channel = perturbation(spontaneous_recovery_schedule(8.0, {"NF1": 2, "FF1": 3, "FFB": 1, "EC": 2}), 8, 8.0)
    assert f.tolist() == [0, 0, 1, 1, 1, -1, 0, 0] and channel.tolist() == [False] * 6 + [True] * 2
    ramp, _ = perturbation(gradual_schedule(8.0, {"NF1": 0, "FF1": 2, "NF2": 0, "FF2": 0}, ramp_batches=2), 2, 8.0)
    np.testing.assert_allclose(ramp, [np.mean(np.arange(1, 9)) / 16, np.mean(np.arange(9, 17)) / 16])
    with pytest.raises(ValueError, match="reference_gain"):
        perturbation(paper_schedule(), 3, 0.0)


def test_the_model_shows_spontaneous_recovery():
    f, channel = perturbation(
        spontaneous_recovery_schedule(8.0, {"NF1": 50, "FF1": 350, "FFB": 15, "EC": 300}), 715, 8.0
    )
    run = simulate(PUBLISHED, f, channel)
    clamp = run["x"][415:]
    assert abs(clamp[0]) < 0.1  # -A brought the net adaptation back to about zero
    assert run["x_s"][415] > 0.25  # while the slow state still holds A
    assert clamp.max() > clamp[0] + 0.2 and clamp.argmax() > 10  # it rebounds towards A, after a while
    assert np.all(np.diff(run["x"][415:]) < 0.05)  # smoothly: nothing is learnt in the clamp


def _curves(washout: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First learning and relearning (100 trials each) around ``washout``, after 350 trials of A."""
    f = np.concatenate([np.ones(350), washout, np.ones(100)])
    e = simulate(PUBLISHED, f)["e"]
    return e[:100], e[-100:]


def test_the_model_saves_only_while_the_slow_state_is_left_over():
    first, after_counter = _curves(-np.ones(15))  # -A until the net adaptation is ~0, slow state not
    assert after_counter[10] < first[10] - 0.1  # savings
    first, after_washout = _curves(np.zeros(3000))  # a complete washout: the slow state decays too
    np.testing.assert_allclose(after_washout, first, atol=1e-3)  # no savings at all


def test_the_fit_recovers_known_parameters_from_simulated_data():
    truth = TwoStateParams(0.9, 0.05, 0.995, 0.008)
    schedule = spontaneous_recovery_schedule(8.0, {"NF1": 40, "FF1": 300, "FFB": 20, "EC": 100})
    f, channel = perturbation(schedule, 460, 8.0)
    f = np.concatenate([f, np.zeros(150), np.ones(150)])  # then a washout and relearning, no clamp
    channel = np.concatenate([channel, np.zeros(300, bool)])
    fitted = ~channel
    rng = np.random.default_rng(0)
    curve = 0.002 + 0.03 * simulate(truth, f, channel)["e"] + rng.normal(0, 3e-4, len(f))
    fit = fit_two_state(curve, f, channel, fitted)
    assert fit.success and fit.rmse < 4e-4
    assert abs(fit.params.a_f - truth.a_f) < 0.03 and abs(fit.params.b_f - truth.b_f) < 0.015
    assert abs(fit.params.a_s - truth.a_s) < 0.002 and abs(fit.params.b_s - truth.b_s) < 0.002
    assert abs(fit.scale - 0.03) < 2e-3 and abs(fit.baseline - 0.002) < 5e-4


def _context_switching_learner(f: np.ndarray, rate: float) -> np.ndarray:
    """A learner that keeps one memory per context and switches by the last trial's field: in the
    field it uses (and trains) its memory of A; in the null field it uses none. Returns e = f - x."""
    memory, errors, previous = 0.0, [], 0.0
    for target in f:
        x = memory if previous != 0 else 0.0
        errors.append(target - x)
        if target != 0:
            memory += rate * (target - x)
        previous = target
    return np.array(errors)


def test_a_context_switching_learner_saves_beyond_the_two_state_prediction():
    batches = {"NF1": 20, "FF1": 120, "NF2": 120, "FF2": 120}
    schedule = paper_schedule(8.0, batches)
    f, _ = perturbation(schedule, 380, 8.0)
    rng = np.random.default_rng(1)
    networks = []
    for k in range(6):
        e = _context_switching_learner(f, rate=0.03 + 0.005 * k)
        networks.append(0.02 * e + rng.normal(0, 2e-4, len(f)))
    networks = np.array(networks)
    edges = np.cumsum([0, *batches.values()])
    curves = {name: networks[:, a:b] for name, a, b in zip(batches, edges[:-1], edges[1:], strict=True)}
    report = two_state_report(curves, schedule, 8.0)
    beyond = report["beyond_model"]["aggregate"]
    assert beyond["log_rate_ratio"]["low"] > 0 and beyond["area_difference"]["low"] > 0
    # the fitted linear model itself, after this complete washout, relearns FF2 as it learnt FF1
    for fit in report["fits"]:
        params = TwoStateParams(fit["a_f"], fit["b_f"], fit["a_s"], fit["b_s"])
        e = simulate(params, f)["e"]
        assert abs(normalised_area(e[260:]) - normalised_area(e[20:140])) < 0.05


def test_relearning_like_the_prediction_is_no_savings_beyond_it():
    x = np.arange(100)
    curves = np.array([0.01 * np.exp(-x / (20 + k)) + 0.001 for k in range(5)])
    beyond = relearning_beyond_model(curves, curves)["aggregate"]
    assert beyond["log_rate_ratio"]["estimate"] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="both be"):
        relearning_beyond_model(curves, curves[:, :50])


def test_a_two_state_learner_saves_nothing_beyond_its_own_model():
    batches = {"NF1": 20, "FF1": 120, "NF2": 120, "FF2": 120}
    schedule = paper_schedule(8.0, batches)
    f, _ = perturbation(schedule, 380, 8.0)
    rng = np.random.default_rng(2)
    truths = [TwoStateParams(0.85, 0.08 + 0.01 * k, 0.99, 0.01) for k in range(6)]
    networks = np.array([0.02 * simulate(t, f)["e"] + rng.normal(0, 2e-4, len(f)) for t in truths])
    edges = np.cumsum([0, *batches.values()])
    curves = {name: networks[:, a:b] for name, a, b in zip(batches, edges[:-1], edges[1:], strict=True)}
    beyond = two_state_report(curves, schedule, 8.0)["beyond_model"]["aggregate"]
    assert abs(beyond["log_rate_ratio"]["estimate"]) < 0.1 and abs(beyond["area_difference"]["estimate"]) < 0.02


def test_the_two_state_command_reads_a_run_folder(tmp_path, capsys):
    import json

    from benchmarks.cli import main

    batches = {"NF1": 20, "FF1": 120, "NF2": 120, "FF2": 120}
    f, _ = perturbation(paper_schedule(8.0, batches), 380, 8.0)
    networks = [0.02 * _context_switching_learner(f, 0.03 + 0.01 * k) for k in range(3)]
    edges = np.cumsum([0, *batches.values()])
    spans = zip(batches, edges[:-1], edges[1:], strict=True)
    curves = {name: [n[a:b].tolist() for n in networks] for name, a, b in spans}
    result = {"config": {"preset": {"field_gain": 8.0, "batches": batches}}, "learning_curves": curves}
    (tmp_path / "result.json").write_text(json.dumps(result))
    assert main(["two-state", str(tmp_path)]) == 0
    assert "FF2 measured against the model's prediction" in capsys.readouterr().out
    report = json.loads((tmp_path / "two_state.json").read_text())
    assert report["relearning"] == "FF2" and report["beyond_model"]["aggregate"]["log_rate_ratio"]["low"] > 0
    with pytest.raises(SystemExit):
        main(["two-state", str(tmp_path / "missing")])
    assert "does not exist" in capsys.readouterr().err
