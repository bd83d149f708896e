"""Reach quality at every curve point: a learning curve that falls because the learner stopped
reaching is flagged (synthetic curves with known answers), the savings metrics leave such networks
out, the protocol records endpoint error and path length beside every deviation, and the board
recomputes the flags instead of believing them."""

import copy

import numpy as np
import pytest
import torch
from test_competence import Still, _gated
from test_leaderboard import _result, _write

from benchmarks.board import entries, ranking, rendering, schema
from benchmarks.savings.metrics import savings
from benchmarks.savings.presets import Preset
from benchmarks.savings.protocol import run_protocol
from benchmarks.savings.reach import COLLAPSE_MIN_ENDPOINT_ERROR, reach_held
from benchmarks.savings.results import make_result

BATCHES = 40


def _reach(endpoint_cm: list[np.ndarray], path_cm: list[np.ndarray]) -> dict[str, np.ndarray]:
    return {"endpoint_error": np.stack(endpoint_cm) / 100, "path_length": np.stack(path_cm) / 100}


def _flat(value: float) -> np.ndarray:
    return np.full(BATCHES, value)


def test_collapse_is_flagged_and_learning_in_a_field_is_not():
    falling = np.linspace(3.0, 0.5, BATCHES)  # a GRU in a fresh field: 3 cm off at first, then better
    rising = np.linspace(2.4, 14.0, BATCHES)  # deviation traded for reach (the RL learners)
    one_bad_batch = _flat(0.5)
    one_bad_batch[20] = 30.0  # a single wild batch averages to 3.4 cm over 10: noise, not collapse
    field = _reach(
        [falling, rising, _flat(0.5), one_bad_batch, _flat(5.5), _flat(5.5)],
        [_flat(12.0), _flat(11.0), np.linspace(11.0, 4.0, BATCHES), _flat(11.0), _flat(11.0), _flat(11.0)],
    )
    # the last two sit at 5.5 cm: below twice a 3 cm baseline (held), above the 5 cm floor for a 1 cm one
    baseline = np.array([0.3, 0.3, 0.3, 0.3, 3.0, 1.0]) / 100
    verdict = reach_held({"NF1": _null(6), "FF1": field}, baseline, reach_distance=0.10)
    assert verdict["held"].tolist() == [True, False, False, True, True, False]
    assert verdict["collapsed_in"] == [[], ["FF1"], ["FF1"], [], [], ["FF1"]]
    assert COLLAPSE_MIN_ENDPOINT_ERROR == 0.05


def _null(networks: int) -> dict[str, np.ndarray]:
    return _reach([_flat(0.3)] * networks, [_flat(10.5)] * networks)


def test_a_short_phase_is_judged_whole_and_a_diverged_arm_has_not_held():
    short = {"endpoint_error": np.array([[0.2, 0.2], [0.2, np.nan]]), "path_length": np.full((2, 2), 0.1)}
    verdict = reach_held({"FF1": short}, np.array([0.003, 0.003]), 0.10)
    assert verdict["held"].tolist() == [False, False]  # 20 cm off over the whole (2-batch) phase; NaN
    calm = {"endpoint_error": np.full((1, 3), 0.01), "path_length": np.full((1, 3), 0.1)}
    assert reach_held({"FF1": calm, "NF2": {k: v[:, :0] for k, v in calm.items()}}, [0.003], 0.1)["held"].tolist() == [
        True
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"baseline_endpoint_error": [0.003]}, "must be \\(1, batches\\), got shape \\(2, 40\\)"),
        ({"baseline_endpoint_error": [0.003, float("nan")]}, "baseline_endpoint_error must be K finite"),
        ({"reach_distance": 0.0}, "reach_distance must be a positive number"),
        ({"reach_distance": "10 cm"}, "reach_distance must be a positive number"),
        ({"window": 0}, "window must be an integer >= 1"),
    ],
)
def test_reach_held_bad_input(kwargs, message):
    arguments = {"reach_curves": {"NF1": _null(2)}, "baseline_endpoint_error": [0.003, 0.003], "reach_distance": 0.1}
    with pytest.raises(ValueError, match=message):
        reach_held(**{**arguments, **kwargs})
    with pytest.raises(ValueError, match="reach_curves\\['NF1'\\]\\['path_length'\\]"):
        reach_held({"NF1": {"endpoint_error": np.zeros((2, 3))}}, [0.003, 0.003], 0.1)


def test_savings_leave_out_networks_whose_reach_collapsed():
    curves = _result(networks=6)["learning_curves"]
    competent = [True, True, True, True, False, True]
    held = [True, False, True, True, True, True]
    both = savings(curves, competence=competent, reach=held)
    subset = savings({p: np.asarray(c)[[0, 2, 3, 5]] for p, c in curves.items()})
    assert both["per_network"] == subset["per_network"] and both["aggregate"] == subset["aggregate"]
    assert both["reach"] == {"networks": 6, "held": 5, "collapsed": 1, "per_network": held}
    assert both["competence"]["competent"] == 5  # each gate counts its own networks
    assert savings(curves, reach=held)["aggregate"]["networks"] == 5
    with pytest.raises(ValueError, match="reach must be 6 booleans"):
        savings(curves, reach=[True] * 5)


def test_the_protocol_records_reach_quality_beside_every_curve_point(tmp_path):
    preset = Preset("tiny", {"NF1": 1, "FF1": 5, "NF2": 1, "FF2": 5})
    result = run_protocol(Still, preset, tmp_path, {"agent": "still"}, progress=False)
    for phase, curve in result["learning_curves"].items():
        for key in ("endpoint_error", "path_length"):
            assert np.asarray(result["reach_curves"][phase][key]).shape == np.asarray(curve).shape
    np.testing.assert_allclose(result["reach_curves"]["FF2"]["endpoint_error"], 0.1, atol=2e-3)  # never moved
    assert np.asarray(result["reach_curves"]["FF2"]["path_length"]).max() < 0.03  # the passive arm drifts ~1.4 cm
    assert result["reach_held"]["per_network"] == {
        "held": [False, False],
        "collapsed_in": [["NF1", "FF1", "NF2", "FF2"]] * 2,
    }
    assert result["reach_held"]["criterion"]["reach_distance_m"] == pytest.approx(0.10)
    assert result["metrics"]["reach"]["collapsed"] == 2
    assert (tmp_path / "figures" / "reach_quality.png").stat().st_size > 1000


def test_a_run_resumed_from_a_checkpoint_without_reach_quality_records_none(tmp_path):
    preset = Preset("tiny", {"NF1": 1, "FF1": 5, "NF2": 1, "FF2": 5})
    assert run_protocol(Still, preset, tmp_path, {"agent": "still"}, progress=False, stop_after=4) is None
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    del saved["reach"]  # as a checkpoint written before reach quality was recorded
    torch.save(saved, tmp_path / "checkpoint.pt")
    result = run_protocol(Still, preset, tmp_path, {"agent": "still"}, progress=False)
    assert "reach_curves" not in result and "reach" not in result["metrics"]  # no half-recorded curves


def _with_reach(result: dict, endpoint_errors: list[float], collapsed: list[int]) -> dict:
    """``result`` gated by these competence endpoint errors, with reach curves in which the networks
    in ``collapsed`` end every phase 12 cm from the target, and its metrics recomputed."""
    result = _gated(result, endpoint_errors)
    reach = {}
    for phase, curve in result["learning_curves"].items():
        error = np.full(np.asarray(curve).shape, 0.004)
        error[collapsed, -10:] = 0.12
        reach[phase] = {"endpoint_error": error, "path_length": np.full(error.shape, 0.105)}
    networks = len(endpoint_errors)
    competence = {"per_network": {"endpoint_error": endpoint_errors, "competent": [e < 0.05 for e in endpoint_errors]}}
    made = make_result(
        result["config"],
        result["learning_curves"],
        1.0,
        competence=competence,
        reach_curves=reach,
        reach_distance=0.10,
    )
    assert made["reach_held"]["per_network"]["held"] == [i not in collapsed for i in range(networks)]
    return {**result, **{k: made[k] for k in ("reach_curves", "reach_held", "metrics", "competence")}}


def test_the_board_counts_networks_whose_reach_held_and_recomputes_the_flags(tmp_path):
    honest = _with_reach(_result(networks=7), [0.01] * 7, collapsed=[2])
    entry = entries.validate(_write(tmp_path / "honest", honest))
    assert entry.reach == (6, 7) and entry.competence == (7, 7)
    assert rendering._cell(ranking.rows([entry])[0], "reach_held") == "6 of 7"
    assert entry.metrics["aggregate"]["networks"] == 6
    lying = copy.deepcopy(honest)
    lying["reach_held"]["per_network"]["held"] = [True] * 7
    with pytest.raises(schema.SubmissionError, match="reach_held/per_network/held: reported"):
        entries.validate(_write(tmp_path / "lying", lying))
    inflated = copy.deepcopy(honest)
    inflated["metrics"] = savings(inflated["learning_curves"], competence=[True] * 7)  # ignores the reach gate
    with pytest.raises(schema.SubmissionError, match="metrics/"):
        entries.validate(_write(tmp_path / "inflated", inflated))
    for broken, message in (
        (lambda r: r["reach_curves"]["FF1"]["endpoint_error"].pop(), "reach_curves/FF1/endpoint_error: shape"),
        (lambda r: r["reach_curves"]["FF2"]["path_length"][0].__setitem__(0, -0.1), "finite distances >= 0"),
        (lambda r: r["reach_curves"].pop("NF1"), "reach_curves: phases"),
        (lambda r: r.pop("competence"), "need the competence gate's endpoint errors"),
    ):
        forged = copy.deepcopy(honest)
        broken(forged)
        with pytest.raises(schema.SubmissionError, match=message):
            entries.validate(_write(tmp_path / "forged", forged))
