"""Preparatory-activity analysis: planted shifts are recovered; bad input is refused; a real run works."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks.savings.latent import PHASES, LatentConfig, analyse, normalised_projections, tdr_axes, uniform_shift

H, TARGETS, T = 20, 8, 40


def _records(persistence=0.4, shift_size=1.0, networks=6, seed=0):
    """Synthetic networks: preparatory states = force encoding + a uniform shift that FF1 adds fully,
    NF2 keeps a fraction ``persistence`` of, and FF2 fully again."""
    rng = np.random.default_rng(seed)
    records = {
        p: SimpleNamespace(
            hidden=np.zeros((networks, TARGETS, T, H)),
            endpoint_force=np.zeros((networks, TARGETS, T, 2)),
            hand_position=np.zeros((networks, TARGETS, T, 2)),
            target=np.zeros((TARGETS, 2)),
        )
        for p in PHASES
    }
    angles = np.deg2rad(np.arange(TARGETS) * 45)
    force = np.stack([np.cos(angles), np.sin(angles)], 1) * 5
    for n in range(networks):
        encode = rng.normal(size=(2, H))
        shift = rng.normal(size=H)
        shift -= encode.T @ np.linalg.lstsq(encode.T, shift, rcond=None)[0]  # outside the force axes
        shift *= shift_size / np.linalg.norm(shift)
        base = force @ encode + rng.normal(0, 1e-3, (TARGETS, H))
        for phase, amount in zip(PHASES, (0.0, 1.0, persistence, 1.0), strict=True):
            records[phase].hidden[n, :, 16] = base + amount * shift
            records[phase].endpoint_force[n, :, 26] = force
    for phase in PHASES:  # straight reaches: zero lateral deviation
        path = np.linspace(0, 1, T)[:, None] * np.array([0.1, 0.0])
        records[phase].hand_position[:] = path
        records[phase].target[:] = [0.1, 0.0]
    return records


@pytest.mark.parametrize("persistence", [0.0, 0.3, 0.8])
def test_planted_persistence_is_recovered(persistence):
    results = analyse(_records(persistence))
    projections = np.asarray(results["per_network"]["projection_NF2"])
    np.testing.assert_allclose(projections, persistence, atol=0.02)
    np.testing.assert_allclose(results["per_network"]["projection_FF1"], 1.0)
    np.testing.assert_allclose(results["per_network"]["projection_NF1"], 0.0)
    if persistence > 0.1:
        assert results["persistence_NF2"]["p_greater_than_0"] < 1e-3


def test_shift_axis_direction_is_recovered():
    records = _records()
    prep = {p: records[p].hidden[0][:, 16] for p in PHASES}
    axes = tdr_axes(prep["NF1"], records["NF1"].endpoint_force[0][:, 26])
    axis, shift = uniform_shift(prep["NF1"], prep["FF1"], axes)
    planted = (prep["FF1"] - prep["NF1"]).mean(0)
    assert abs(axis @ planted / np.linalg.norm(planted)) > 0.999
    assert np.abs(axes @ axis).max() < 1e-9
    assert normalised_projections(prep, axis)["FF2"] == pytest.approx(1.0)


def test_degenerate_inputs_are_refused():
    records = _records()
    prep = records["NF1"].hidden[0][:, 16]
    force = records["NF1"].endpoint_force[0][:, 26]
    with pytest.raises(ValueError, match="at least 4 targets"):
        tdr_axes(prep[:1], force[:1])
    with pytest.raises(ValueError, match="no shift"):
        uniform_shift(prep, prep.copy(), tdr_axes(prep, force))
    bad = prep.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        tdr_axes(bad, force)
    with pytest.raises(ValueError, match="targets, H"):
        tdr_axes(prep, force[:5])
    with pytest.raises(ValueError, match="mismatched"):
        uniform_shift(prep, prep[:, :5], tdr_axes(prep, force))
    with pytest.raises(ValueError, match="do not span"):
        tdr_axes(prep, np.ones_like(force))
    records["NF2"].hidden = None
    with pytest.raises(ValueError, match="exposes no recurrent state"):
        analyse(records)
    with pytest.raises(ValueError, match="missing"):
        analyse({"NF1": records["NF1"]})


def test_a_real_short_gru_run_goes_through_the_whole_command(tmp_path, capsys, monkeypatch):
    from benchmarks.cli import main
    from benchmarks.savings.learners import bptt_agent_factory
    from benchmarks.savings.presets import Preset
    from benchmarks.savings.protocol import run_protocol

    tiny = Preset("tiny", {"NF1": 1, "FF1": 3, "NF2": 1, "FF2": 3}, pretrain_batches=2)
    make, provenance = bptt_agent_factory("gru", 8, 2, tiny, tmp_path, seed=1, device="cpu")
    run_protocol(make, tiny, tmp_path, {"agent": "gru", "hidden": 8, "networks": 2, "seed": 1}, progress=False)
    assert main(["latent", str(tmp_path)]) == 0
    assert "NF2 projection on the uniform shift" in capsys.readouterr().out
    results = json.loads((tmp_path / "latent" / "latent.json").read_text())
    assert results["networks"] == 2 and np.isfinite(results["per_network"]["projection_NF2"]).all()
    assert np.isfinite(results["causal"]["first_trial_deviation_m"]).all()
    assert len(results["causal"]["first_trial_deviation_m"][0]) == len(LatentConfig().multipliers)
    for figure in ("tdr_plane.png", "shift_projection.png", "causal_test.png"):
        assert (tmp_path / "latent" / figure).stat().st_size > 1000

    # the analysis measures under the run's task constants (here a run made with --task test_go_time=0.44)
    import dataclasses

    from benchmarks.savings import latent
    from savings_gym.envs import task_params

    result = json.loads((tmp_path / "result.json").read_text())
    result["config"]["task"] = json.loads(
        json.dumps(dataclasses.asdict(task_params("ArmCurlField-v0", test_go_time=0.44)))
    )
    (tmp_path / "result.json").write_text(json.dumps(result))
    made = []
    real = latent.phase_end_agent

    def recording(run_dir, phase, task=None):
        agent = real(run_dir, phase, task)
        made.append(agent.env.params.test_go_time)
        return agent

    monkeypatch.setattr(latent, "phase_end_agent", recording)
    latent.run_latent(tmp_path)
    assert made == [0.44] * 4
    result["config"]["task"]["no_such_constant"] = 1
    (tmp_path / "result.json").write_text(json.dumps(result))
    with pytest.raises(ValueError, match="no_such_constant"):
        latent.run_latent(tmp_path)


def test_tdr_axes_on_a_hand_computed_example():
    """Forces not centred (mean [1, 0]); unit 0 reads force x, unit 1 force y, unit 2 a common
    offset plus half of force x. By hand: B = pinv([X, 1]) N = [[1, 0, 0.5], [0, 1, 0], [0, 0, 1]],
    pinv(B) = inv(B) = [[1, 0, -0.5], [0, 1, 0], [0, 0, 1]]: the paper's axes span units 0 and 1,
    while the coefficients' rows span (1, 0, 0.5) and (0, 1, 0)."""
    force = np.array([[2.0, 1.0], [2.0, -1.0], [0.0, 1.0], [0.0, -1.0]])
    states = np.column_stack([force[:, 0], force[:, 1], 1.0 + 0.5 * force[:, 0]])

    def plane(axes):  # the orthogonal projector onto the axes' span: basis and signs do not matter
        return axes.T @ axes

    paper = tdr_axes(states, force)
    np.testing.assert_allclose(paper @ paper.T, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(plane(paper), np.diag([1.0, 1.0, 0.0]), atol=1e-12)
    first = np.array([1.0, 0.0, 0.5]) / np.sqrt(1.25)
    coefficients = tdr_axes(states, force, "coefficients")
    np.testing.assert_allclose(plane(coefficients), np.outer(first, first) + np.diag([0.0, 1.0, 0.0]), atol=1e-12)
    # so the uniform shift along unit 2 is kept whole by the paper's axes, and tilted by the others
    shift = np.array([[0.0, 0.0, 1.0]] * 4)
    np.testing.assert_allclose(uniform_shift(states, states + shift, paper)[0], [0.0, 0.0, 1.0], atol=1e-12)
    tilted = uniform_shift(states, states + shift, coefficients)[0]
    np.testing.assert_allclose(tilted, np.array([-0.4, 0.0, 0.8]) / np.linalg.norm([-0.4, 0.0, 0.8]), atol=1e-12)
    with pytest.raises(ValueError, match="method must be one of"):
        tdr_axes(states, force, "svd")
    with pytest.raises(ValueError, match="tdr must be one of"):
        LatentConfig(tdr="svd")
