"""BPTT controllers and trainer: the paper's loss and clipping, K-independence, checkpoints."""

import numpy as np
import pytest
import torch

from agents.bptt import BPTTAgent, load_pretrained, network_seeds, paper_loss, save_pretrained
from agents.controllers import RecurrentControllers
from savings_gym.schedule import Schedule

SCHEDULE = Schedule([("NF", 0.0, 16), ("FF", 8.0, None)])


def _controllers(seeds, cell="gru", hidden=16):
    c = RecurrentControllers(cell, seeds, 17, hidden)
    c.freeze_input_and_output()
    return c


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
def test_controllers_shapes_and_paper_initialisation(cell):
    c = RecurrentControllers(cell, [1, 2, 3], 17, 32)
    state = c.initial_state(5)
    u, new = c(torch.zeros(3, 5, 17), state)
    assert u.shape == (3, 5, 6) and new[0].shape == (3, 5, 32)
    assert torch.allclose(c.b_out, torch.full_like(c.b_out, -5.0)) and (u < 0.01).all()
    w_hh = c.w_hh[0].detach()
    eye = w_hh.T @ w_hh if w_hh.shape[0] >= w_hh.shape[1] else w_hh @ w_hh.T
    assert torch.allclose(eye, torch.eye(eye.shape[0]), atol=1e-5)  # orthogonal recurrent weights
    assert (c.b_hh == 0).all() and (c.h0 == 0).all()


def test_network_k_does_not_depend_on_how_many_are_built_together():
    alone = RecurrentControllers("gru", network_seeds(0, 1, first=2), 17, 16)
    together = RecurrentControllers("gru", network_seeds(0, 4), 17, 16)
    for name, param in alone.named_parameters():
        torch.testing.assert_close(param[0], getattr(together, name)[2])


def test_freeze_leaves_recurrent_weights_and_initial_state_learning():
    c = _controllers([0])
    trainable = {n for n, p in c.named_parameters() if p.requires_grad}
    assert trainable == {"w_hh", "b_hh", "h0"}


def test_bad_controller_arguments():
    with pytest.raises(ValueError, match="cell"):
        RecurrentControllers("transformer", [0], 17, 16)
    with pytest.raises(ValueError, match="hidden_size"):
        RecurrentControllers("gru", [0], 17, 0)
    with pytest.raises(ValueError, match="seed"):
        RecurrentControllers("gru", [], 17, 16)


def test_paper_loss_against_a_direct_computation():
    g = torch.Generator().manual_seed(0)
    k, b, t, h = 2, 3, 10, 4
    traj = {
        key: torch.rand(k, b, t, n, generator=g)
        for key, n in (
            ("hand_position", 2),
            ("desired_position", 2),
            ("hand_velocity", 2),
            ("muscle_force", 6),
            ("hidden", h),
        )
    }
    loss = paper_loss(traj)
    for net in range(k):
        x, d, v, f, hid = (
            traj[key][net].numpy().astype(np.float64)
            for key in ("hand_position", "desired_position", "hand_velocity", "muscle_force", "hidden")
        )
        expected = (
            1e3 * np.abs(x - d).sum(-1).mean()
            + 1e5 * (np.diff(v, 2, axis=1) ** 2).sum(-1).mean()
            + 1e-1 * f.sum(-1).mean()
            + 3e-4 * (np.diff(f, axis=1) ** 2).sum(-1).mean()
            + 1e-5 * (hid**2).mean()
            + 1e-3 * (np.diff(hid, axis=1) ** 2).mean()
        )
        assert loss[net].item() == pytest.approx(expected, rel=1e-5)


def test_gradient_is_clipped_per_network():
    agent = BPTTAgent(_controllers(network_seeds(0, 2)), SCHEDULE, lr=0.0)
    agent.controllers.w_hh.grad = torch.zeros_like(agent.controllers.w_hh)
    agent.controllers.w_hh.grad[0] = 10.0  # network 0: norm far above 1
    agent.controllers.w_hh.grad[1] = 1e-4  # network 1: tiny, must stay untouched
    agent.controllers.b_hh.grad = torch.zeros_like(agent.controllers.b_hh)
    agent.controllers.h0.grad = torch.zeros_like(agent.controllers.h0)
    agent._clip_per_network()
    norms = agent.controllers.w_hh.grad.reshape(2, -1).norm(dim=1)
    assert norms[0].item() == pytest.approx(1.0, rel=1e-4)
    assert norms[1].item() == pytest.approx(1e-4 * agent.controllers.w_hh[1].numel() ** 0.5, rel=1e-4)


def test_results_for_network_i_do_not_depend_on_k():
    """Network 1 trained alone and network 1 trained among three go through identical batches."""
    alone = BPTTAgent(_controllers(network_seeds(0, 1, first=1)), SCHEDULE, seed=0, first_network=1)
    among = BPTTAgent(_controllers(network_seeds(0, 3)), SCHEDULE, seed=0)
    for _ in range(3):
        loss_alone = alone.train_batch()
        loss_among = among.train_batch()
        assert loss_alone[0] == pytest.approx(loss_among[1], rel=1e-5)
    torch.testing.assert_close(alone.controllers.w_hh[0], among.controllers.w_hh[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(alone.evaluate(8.0).hand_position[0], among.evaluate(8.0).hand_position[1], atol=1e-6)


def test_evaluation_leaves_the_agent_unchanged_and_is_reproducible():
    agent = BPTTAgent(_controllers(network_seeds(0, 2)), SCHEDULE, seed=0)
    before = {k: v.clone() for k, v in agent.controllers.state_dict().items()}
    first, second = agent.evaluate(8.0), agent.evaluate(8.0)
    np.testing.assert_array_equal(first.hand_position, second.hand_position)
    assert first.hand_position.shape == (2, 8, 100, 2) and first.hidden.shape == (2, 8, 100, 16)
    for k, v in agent.controllers.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert agent.episodes_completed == 0


def test_state_dict_round_trip_continues_identically():
    a = BPTTAgent(_controllers(network_seeds(0, 2)), SCHEDULE, seed=3)
    a.train_batch()
    saved = a.state_dict()
    next_a = a.train_batch()
    b = BPTTAgent(_controllers(network_seeds(0, 2)), SCHEDULE, seed=3)
    b.load_state_dict(saved)
    np.testing.assert_array_equal(b.train_batch(), next_a)
    assert b.episodes_completed == a.episodes_completed == 16


def test_pretrained_files_load_safely_and_refuse_garbage(tmp_path):
    c = RecurrentControllers("gru", [5, 6], 17, 8)
    save_pretrained(c, tmp_path / "nets.pt", {"batches_done": 0})
    loaded, meta = load_pretrained(tmp_path / "nets.pt", networks=[1])
    torch.testing.assert_close(loaded.w_hh[0], c.w_hh[1])
    assert meta == {"batches_done": 0}
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable savings-gym checkpoint"):
        load_pretrained(tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="holds 2 networks"):
        load_pretrained(tmp_path / "nets.pt", networks=[0, 5])


def test_task_constants_reach_the_test_reaches():
    """``task`` sets the constants of the training and the test reaches alike: at test go time 0.44 s
    the shipped network holds still until the cue (~step 51); at the default 0.10 s it is moving by then.
    (The compiled engine takes its test reaches from the same test env; compiling here costs minutes.)"""
    from agents.bptt import PRETRAINED_DIR

    controllers, _ = load_pretrained(PRETRAINED_DIR / "gru128.pt", networks=[0])
    schedule = Schedule([("FF", 8.0, None)])
    moved = {}
    for go_time in (0.10, 0.44):
        agent = BPTTAgent(controllers, schedule, task={"test_go_time": go_time}, engine="eager")
        assert agent.env.params.test_go_time == go_time
        record = agent.evaluate_then_train(0.0)
        path = record.hand_position[0]  # (8 targets, steps, 2)
        moved[go_time] = np.linalg.norm(path[:, 45] - path[:, 0], axis=-1).mean()
    assert moved[0.44] < 0.003 < 0.03 < moved[0.10], moved


def test_a_run_pretrained_in_pieces_joins_into_the_whole_run(tmp_path, monkeypatch):
    """Networks 0-2 pretrained at once equal networks 0 and 1-2 pretrained as two pieces and joined;
    pieces of another run, unfinished pieces and gaps are refused."""
    from benchmarks.savings.run import pretrain_agent

    monkeypatch.setenv("SAVINGS_GYM_BPTT_ENGINE", "eager")  # compiling costs minutes; the engines agree

    def pretrained(name, networks, first=0, batches=1, seed=0):
        return pretrain_agent("gru", networks, batches, tmp_path / name, hidden=8, seed=seed, first_network=first)

    whole = pretrained("whole.pt", 3)
    first, second = pretrained("a.pt", 1), pretrained("b.pt", 2, first=1)
    joined = pretrain_agent("gru", 3, 1, tmp_path / "joined.pt", hidden=8, join=[second, first])  # any order
    assert joined.name == "joined.pt"
    (want, _), (got, meta) = load_pretrained(whole), load_pretrained(joined)
    assert got.seeds == want.seeds
    for name, param in want.named_parameters():
        torch.testing.assert_close(getattr(got, name), param, rtol=1e-5, atol=1e-6)
    assert meta["networks"] == 3 and [p["first_network"] for p in meta["joined_from"]] == [0, 1]
    assert all(len(p["sha256"]) == 64 for p in meta["joined_from"])

    other_seed = pretrained("c.pt", 2, first=1, seed=7)
    with pytest.raises(ValueError, match=r"not a piece of the same run.*\['seed'\]"):
        pretrain_agent("gru", 3, 1, tmp_path / "x.pt", hidden=8, join=[first, other_seed])
    with pytest.raises(ValueError, match="starts at network 1, expected 0"):
        pretrain_agent("gru", 2, 1, tmp_path / "x.pt", hidden=8, join=[second])
    with pytest.raises(ValueError, match="expected 3"):
        pretrain_agent("gru", 5, 1, tmp_path / "x.pt", hidden=8, join=[whole, second])
    with pytest.raises(ValueError, match="no such file"):
        pretrain_agent("gru", 3, 1, tmp_path / "x.pt", hidden=8, join=[tmp_path / "missing.pt"])
    with pytest.raises(ValueError, match="--first-network must be an integer >= 0"):
        pretrain_agent("gru", 3, 1, tmp_path / "x.pt", hidden=8, first_network=-1)
    controllers, meta = load_pretrained(first)
    save_pretrained(controllers, tmp_path / "unfinished.pt", {**meta, "batches_done": 0})
    with pytest.raises(ValueError, match="unfinished piece"):
        pretrain_agent("gru", 3, 1, tmp_path / "x.pt", hidden=8, join=[tmp_path / "unfinished.pt", second])
    assert not (tmp_path / "x.pt").exists()


def test_concatenate_refuses_networks_of_another_size():
    with pytest.raises(ValueError, match="hidden_size 16, part 0 has 8"):
        RecurrentControllers.concatenate(
            [RecurrentControllers("gru", [1], 17, 8), RecurrentControllers("gru", [2], 17, 16)]
        )
    with pytest.raises(ValueError, match="at least one"):
        RecurrentControllers.concatenate([])
