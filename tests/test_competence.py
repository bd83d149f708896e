"""The competence gate: reach quality on known paths, savings over competent networks only, a still
learner excluded end to end, and a board that counts ("k of n") and cannot be told otherwise."""

import copy
import math

import numpy as np
import pytest
from test_leaderboard import _result, _write

from benchmarks.board import entries, ranking, rendering, schema
from benchmarks.savings.metrics import savings
from benchmarks.savings.presets import Preset
from benchmarks.savings.protocol import run_protocol
from benchmarks.savings.reach import COMPETENCE_MAX_ENDPOINT_ERROR, competent, reach_quality

TARGETS = np.array([[0.1 * math.cos(a), 0.1 * math.sin(a)] for a in np.arange(8) * math.pi / 4])


def _paths(fraction_travelled: float, steps: int = 100) -> np.ndarray:
    """(8, T, 2): from the origin towards each target at constant speed, stopping at ``fraction_travelled``."""
    progress = np.clip(np.arange(1, steps + 1) / 50, 0, 1) * fraction_travelled  # arrives at step 50
    return progress[None, :, None] * TARGETS[:, None, :]


def test_reach_quality_on_known_paths():
    hand = np.stack([_paths(1.0), _paths(0.0), _paths(0.6)])  # reaches, stays still, stops 4 cm short
    quality = reach_quality(hand, TARGETS, dt=0.01)
    np.testing.assert_allclose(quality["endpoint_error"], [0.0, 0.1, 0.04], atol=1e-12)
    np.testing.assert_allclose(quality["path_length"], [0.098, 0.0, 0.0588], atol=1e-12)  # from after step 1
    # within 2 cm of the target once 80% of the way there: step 40 of a 50-step reach, t = 0.40 s
    assert quality["time_to_target"][0] == pytest.approx(0.40) and np.isnan(quality["time_to_target"][1:]).all()
    assert quality["arrived"].tolist() == [1.0, 0.0, 0.0]
    one_short = np.stack([np.concatenate([_paths(1.0)[:7], _paths(0.5)[7:]])])  # the last reach stops halfway
    mixed = reach_quality(one_short, TARGETS)
    assert mixed["arrived"][0] == 7 / 8 and mixed["time_to_target"][0] == pytest.approx(0.40)
    assert competent(quality["endpoint_error"]).tolist() == [True, False, True]  # 5 cm: 4 cm short still reaches
    assert COMPETENCE_MAX_ENDPOINT_ERROR == 0.05


def test_savings_counts_only_the_competent_networks():
    curves = _result(networks=6)["learning_curves"]
    gate = [True, False, True, True, False, True]
    gated = savings(curves, competence=gate)
    subset = savings({p: np.asarray(c)[np.array(gate)] for p, c in curves.items()})
    assert gated["competence"] == {"networks": 6, "competent": 4, "excluded": 2, "per_network": gate}
    assert gated["aggregate"] == subset["aggregate"] and gated["per_network"] == subset["per_network"]
    none = savings(curves, competence=[False] * 6)
    assert none["aggregate"]["networks"] == 0 and math.isnan(none["aggregate"]["savings_index"]["estimate"])
    with pytest.raises(ValueError, match="competence must be 6 booleans"):
        savings(curves, competence=[True] * 5)


class Still:
    """Two learners that never move (they train their 8 episodes, holding still)."""

    num_networks = 2

    def __init__(self, envs):
        self.env = envs.vector(16, num_worlds=2)
        self.env.reset(seed=0)

    def train(self, episodes):
        self.env.reset()
        for _ in range(100):
            self.env.step(np.zeros((16, 6), np.float32))

    def evaluate(self, field_gain):
        from agents.interface import run_test_reaches

        return run_test_reaches(lambda obs, t: np.zeros((len(obs), 6), np.float32), 2, field_gain)

    def state_dict(self):
        return {"env": self.env.get_state()}

    def load_state_dict(self, state):
        self.env.set_state(state["env"])


def test_a_learner_that_does_not_reach_is_measured_and_left_out(tmp_path):
    preset = Preset("tiny", {"NF1": 1, "FF1": 5, "NF2": 1, "FF2": 5})
    result = run_protocol(Still, preset, tmp_path, {"agent": "still"}, progress=False)
    quality = result["competence"]["per_network"]
    np.testing.assert_allclose(quality["endpoint_error"], 0.1, atol=2e-3)  # the hand stays 10 cm from the target
    assert quality["competent"] == [False, False] and result["competence"]["criterion"]["max_endpoint_error_m"] == 0.05
    assert result["metrics"]["competence"]["excluded"] == 2 and result["metrics"]["aggregate"]["networks"] == 0
    assert np.asarray(result["learning_curves"]["FF1"]).shape == (2, 5)  # the curves are still all recorded


def _gated(result, errors):
    """``result`` with a competence record of these endpoint errors and its metrics recomputed."""
    flags = [bool(e < COMPETENCE_MAX_ENDPOINT_ERROR) for e in errors]
    result["competence"] = {"per_network": {"endpoint_error": errors, "competent": flags}}
    result["metrics"] = savings(result["learning_curves"], competence=flags)
    return result


def test_the_board_ranks_and_counts_competent_networks_only(tmp_path, capsys):
    errors = [0.01] * 5 + [0.09]
    entry = entries.validate(_write(tmp_path / "gated", _gated(_result(networks=6), errors)))
    assert entry.competence == (5, 6) and entry.ranked
    row = ranking.rows([entry])[0]
    assert rendering._cell(row, "competent") == "5 of 6"
    assert rendering._cell(row, "fraction_with_savings") == f"{entry.with_savings} of {entry.fits}"
    table = [line for line in rendering.render_markdown(ranking.rows([entry])).splitlines() if line[:1] == "|"]
    assert len(table) == 3 and "%" not in table[2]  # header, rule, the entry: counts, never a percentage
    from benchmarks.cli import main

    assert main(["leaderboard", "validate", str(tmp_path / "gated")]) == 0
    assert "5 of 6 networks reach (the others are left out)" in capsys.readouterr().out
    few = entries.validate(_write(tmp_path / "few", _gated(_result(networks=6, seed=1), [0.01] * 4 + [0.09] * 2)))
    assert not few.ranked  # 4 competent networks: too few to rank
    old = entries.validate(_write(tmp_path / "old", _result(networks=6, seed=2)))
    assert old.competence is None and rendering._cell(ranking.rows([old])[0], "competent") == "not recorded"


def test_the_board_refuses_competence_flags_its_endpoint_errors_do_not_give(tmp_path):
    honest = _gated(_result(networks=6), [0.01] * 5 + [0.09])
    lying = copy.deepcopy(honest)
    lying["competence"]["per_network"]["competent"] = [True] * 6
    with pytest.raises(schema.SubmissionError, match="competence/per_network/competent: reported"):
        entries.validate(_write(tmp_path / "lying", lying))
    inflated = copy.deepcopy(honest)
    inflated["metrics"] = savings(inflated["learning_curves"])  # metrics over every network, ignoring the gate
    with pytest.raises(schema.SubmissionError, match="metrics/"):
        entries.validate(_write(tmp_path / "inflated", inflated))
