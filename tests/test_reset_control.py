"""The reset control (issue 19): a copy of the learners that meets FF2 with its learner state of NF1's
start and everything else (the envs, where the schedule stands, the random streams) of the main run's
FF2; real BPTT, SB3 and template learners, the exact first point, resume, metrics and the board."""

import copy
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from test_protocol import TINY, _run  # two shipped GRU-16 networks that reach, through a tiny preset

from agents.interface import ProtocolEnvs, Resettable
from benchmarks.board import entries, schema
from benchmarks.savings.learners import bptt_agent_factory, custom_agent_factory, sb3_agent_factory, sb3_spec
from benchmarks.savings.metrics import savings
from benchmarks.savings.presets import Preset, get_preset
from benchmarks.savings.protocol import reset_learners, run_protocol
from benchmarks.savings.run import run
from benchmarks.savings.summary import summary_table

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

ROOT = Path(__file__).resolve().parent.parent
NO_NF1 = Preset("tiny0", {"NF1": 0, "FF1": 3, "NF2": 1, "FF2": 3}, use_shipped_pretrained=True)


def same(a, b):
    """Whether two state trees are equal, tensors and arrays exactly."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _pair(make, batches=5):
    """A main learner trained ``batches`` batches and its reset control, forked as the protocol does at FF2."""
    schedule = TINY.schedule()
    main, control = make(ProtocolEnvs(schedule)), make(ProtocolEnvs(schedule))
    kept = control.learner_state()  # NF1's start
    main.train(8 * batches)
    trained = main.learner_state()
    reset_learners(control, main, kept)
    return main, control, kept, trained


def test_a_bptt_reset_control_meets_ff2_with_nf1s_weights_in_ff2s_world(tmp_path):
    make, _ = bptt_agent_factory("gru", 16, 2, TINY, tmp_path, seed=1, device="cpu")
    main, control, kept, trained = _pair(make)
    assert isinstance(control, Resettable)
    assert same(control.learner_state(), kept)  # weights, optimiser and schedule of NF1's start, exactly
    assert not same(trained["controllers"], kept["controllers"])  # which the main run's training had moved
    assert same(main.learner_state(), trained)  # the main run is untouched
    # the envs are where the schedule stands (FF2's start here), not back at NF1's: counters and streams
    assert control.episodes_completed == main.episodes_completed == 40 and control.phase == "FF2"
    assert same(control.state_dict()["world"], main.state_dict()["world"])
    assert same(control.state_dict()["rngs"], main.state_dict()["rngs"])
    fresh = make(ProtocolEnvs(TINY.schedule()))  # the same networks as they left pretraining
    np.testing.assert_array_equal(control.evaluate(8.0).hand_position, fresh.evaluate(8.0).hand_position)


def test_an_sb3_reset_control_restores_weights_optimiser_and_normalisation_not_the_env(tmp_path):
    spec = sb3_spec("sb3:PPO", "ArmCurlField-v0", {"n_epochs": 1})
    make, _ = sb3_agent_factory(spec, 1, get_preset("smoke"), tmp_path, seed=0, device="cpu")
    main, control, kept, trained = _pair(make, batches=3)
    assert same(control.learner_state(), kept)
    for key in ("parameters", "normalization", "counters"):  # all moved by training, all restored
        assert not same(trained["learners"][0][key], kept["learners"][0][key]), key
    assert control.episodes_completed == main.episodes_completed == 24
    main_state, control_state = main.state_dict()["learners"][0], control.state_dict()["learners"][0]
    for key in ("world", "rngs", "last_obs", "action_space_rng"):  # the env and the streams are the main run's
        assert same(control_state[key], main_state[key]), key


def test_with_no_nf1_the_reset_controls_first_point_is_ff1s_and_the_main_run_is_untouched(tmp_path):
    plain = run("gru", 16, 2, NO_NF1, tmp_path / "plain", seed=1, progress=False)
    both = run("gru", 16, 2, NO_NF1, tmp_path / "reset", seed=1, progress=False, reset_control=True)
    curves = {phase: np.asarray(c) for phase, c in both["learning_curves"].items()}
    assert curves["FFR"].shape == curves["FF2"].shape == (2, 3)
    # the learners of NF1's start are FF1's first learners: the same test reaches in the same field
    np.testing.assert_array_equal(curves["FFR"][:, 0], curves["FF1"][:, 0])
    assert not np.array_equal(curves["FF2"][:, 0], curves["FF1"][:, 0])  # the main run remembers FF1
    for phase in ("FF1", "NF2", "FF2"):  # the control trains its own copies
        assert both["learning_curves"][phase] == plain["learning_curves"][phase]
    assert both["config"]["reset_control"] is True and plain["config"]["reset_control"] is False
    block = both["metrics"]["reset_control"]
    assert set(block) == {"per_network", "aggregate", "fit_free_vs_reset", "fit_free_reset"}
    assert block["per_network"]["first_error_FFR"] == both["metrics"]["per_network"]["first_error_FF1"]
    on_disk = json.loads((tmp_path / "reset" / "result.json").read_text())
    jsonschema.Draft202012Validator(schema.SUBMISSION_SCHEMA).validate(on_disk)
    assert np.shape(on_disk["reach_curves"]["FFR"]["endpoint_error"]) == (2, 3)
    assert "FF2 vs reset FFR" in summary_table(both) and "reset: FFR vs FF1" in summary_table(both)
    from benchmarks.savings.figures import learning_curves_figure

    labels = [t.get_text() for t in learning_curves_figure(both).axes[0].get_legend().get_texts()]
    assert labels == ["FF1 (n=2)", "FF2 (n=2)", "FFR: reset control (n=2)"]


def test_a_run_with_the_reset_control_stopped_around_ff2s_start_resumes_identically(tmp_path):
    whole = _run(tmp_path / "whole", reset_control=True)
    assert _run(tmp_path / "split", 5, reset_control=True) is None  # FF2's start: NF1's learner state kept
    assert _run(tmp_path / "split", 6, reset_control=True) is None  # after the reset
    assert _run(tmp_path / "split", reset_control=True)["learning_curves"] == whole["learning_curves"]


def test_an_sb3_run_with_more_reaches_per_update_and_both_controls(tmp_path):
    preset = get_preset("smoke").with_changes({"NF1": 0, "FF1": 4, "NF2": 2, "FF2": 4}, reaches_per_update=16)
    result = run(
        "sb3:PPO",
        None,
        1,
        preset,
        tmp_path,
        progress=False,
        hyperparams={"n_epochs": 1},
        practice_control=True,
        reset_control=True,
    )
    curves = result["learning_curves"]
    assert {phase: np.shape(c) for phase, c in curves.items()} == {
        "FF1": (1, 2),
        "NF2": (1, 1),
        "FF2": (1, 2),
        "NFC": (1, 3),
        "FFC": (1, 2),
        "FFR": (1, 2),
    }
    assert curves["FFR"][0][0] == curves["FF1"][0][0]
    assert {"practice_control", "reset_control"} <= set(result["metrics"])


def test_the_template_learner_offers_the_reset_too(tmp_path):
    # hidden 16: a size of the shipped GRUs the template warm-starts from
    make, details = custom_agent_factory(f"{ROOT}/examples/reinforce.py:Reinforce", 16, 1, tmp_path, 0, "cpu")
    result = run_protocol(make, NO_NF1, tmp_path, {"agent": "reinforce", **details}, progress=False, reset_control=True)
    assert result["learning_curves"]["FFR"][0][0] == result["learning_curves"]["FF1"][0][0]


def test_learners_without_the_two_methods_and_other_schedules_are_refused(tmp_path):
    class Still:  # a learner of one's own without learner_state / load_learner_state
        num_networks = 1

        def __init__(self, envs):
            pass

        def state_dict(self):
            return {}

    with pytest.raises(ValueError, match="Still has no learner_state / load_learner_state: the reset control"):
        run_protocol(Still, TINY, tmp_path, {"agent": "still"}, progress=False, reset_control=True)
    from benchmarks.savings.protocol import protocol_schedule

    recovery = protocol_schedule("ArmCurlFieldSpontaneousRecovery-v0", TINY)
    with pytest.raises(ValueError, match="the reset control is defined for the paper's schedule"):
        run_protocol(Still, TINY, tmp_path, {}, progress=False, reset_control=True, schedule=recovery)


def test_reset_metrics_are_computed_as_the_practice_controls_and_checked_by_the_board(tmp_path):
    from test_leaderboard import _result

    result = _result()
    curves = {phase: np.asarray(c) for phase, c in result["learning_curves"].items()}
    curves["FFR"] = curves["FF1"].copy()  # a control that relearns exactly as FF1: no savings
    metrics = savings(curves)
    block = metrics["reset_control"]
    assert block["per_network"]["reset_index"] == [0.0] * 6
    assert block["per_network"]["savings_index_vs_reset"] == metrics["per_network"]["savings_index"]
    assert block["fit_free_reset"]["aggregate"]["early_reduction_difference"]["estimate"] == 0.0
    result["learning_curves"]["FFR"] = curves["FFR"].tolist()
    result["config"]["reset_control"] = True
    result["metrics"] = json.loads(json.dumps(metrics))
    folder = tmp_path / "ok"
    folder.mkdir()
    (folder / "result.json").write_text(json.dumps(result))
    assert "reset_control" in entries.validate(folder).metrics
    for change, message in (
        (lambda r: r["config"].update(reset_control=False), "learning_curves/FFR: a reset-control curve"),
        (lambda r: r["learning_curves"].pop("FFR"), "learning_curves/FFR: missing: the run had the reset control"),
        (lambda r: r["metrics"]["reset_control"]["aggregate"]["reset_index"].update(estimate=1.0), "reset_control"),
    ):
        bad = copy.deepcopy(result)
        change(bad)
        folder = tmp_path / f"bad{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        (folder / "result.json").write_text(json.dumps(bad, allow_nan=True))
        with pytest.raises(schema.SubmissionError, match=message):
            entries.validate(folder)
