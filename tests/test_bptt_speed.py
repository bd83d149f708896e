"""The fast BPTT paths against the reference: hand-written backwards, and 20 batches of training.

Tolerances: the engines compute the same float32 arithmetic in different orders (fused kernels,
one weight-gradient matmul over all steps instead of a sum of per-step ones), so they differ by
rounding, which BPTT through 100 steps then carries. Over 20 batches at K=2, H=32 the largest
differences seen here were 2.6e-7 relative in the losses, 1.8e-7 m in hand positions and 6e-7
relative in the recurrent-weight gradients; the bounds below are ~30x those, far below any effect
that matters (a learning-curve point is ~1e-2 m) and far above rounding, so a real error (a wrong
sign or a missing term in a backward) fails them. Since the compiled engine computes the loss as
one compiled reduction (another summation order over each network's 25,600 hidden-state
entries), its losses differ by up to 9.8e-7 relative (hands 1.8e-7 m, gradients 2.5e-7 of their
largest entry), so for that engine the loss bound is ~10x the observed difference.
"""

import os

import numpy as np
import pytest
import torch

from agents.bptt import ENGINES, BPTTAgent, network_seeds
from agents.bptt_compiled import Episode
from agents.controllers import RecurrentControllers, _GRUGates
from savings_gym.arm import ArmParams, ArmState, arm_at_rest, arm_step_terms, make_effector
from savings_gym.arm_grad import arm_step_function
from savings_gym.backend import TorchBackend
from savings_gym.differentiable import DifferentiableArmEnv
from savings_gym.schedule import paper_schedule

LOSS_RTOL, HAND_ATOL_M, GRAD_RTOL = 1e-5, 5e-6, 2e-5
GPU = os.environ.get("SAVINGS_GYM_TEST_DEVICE", "cuda")  # `savings-gym bench gpu --dry-run` sets "cpu"


def _arm_inputs(batch: int = 24, seed: int = 0, edges: bool = True) -> tuple[ArmParams, TorchBackend, tuple]:
    """Float64 arm states spread over the joint range, lengthening and shortening muscles; with
    ``edges``, also the kinks the clips create: joints at and beyond their limits, activations at
    their floor and ceiling, excitations outside [0.001, 1] (finite differences cannot check
    those, so gradcheck runs without them)."""
    g = torch.Generator().manual_seed(seed)
    xp = TorchBackend(differentiable=True)
    p = ArmParams.from_effector(make_effector(), xp)
    q = torch.stack([0.1 + torch.rand(batch, generator=g) * 2.1, 0.1 + torch.rand(batch, generator=g) * 2.5], 1)
    qd = torch.randn(batch, 2, generator=g) * 3
    activation = 0.01 + torch.rand(batch, 6, generator=g) * 0.6
    excitation = 0.01 + torch.rand(batch, 6, generator=g) * 0.9
    if edges:
        q[0] = torch.tensor([0.0, 2.7052603])  # both joints at a limit
        qd[0] = torch.tensor([-1.0, 2.0])  # pushing past them
        activation[1] = 0.001  # the floor exactly (a tie in the clip)
        activation[2, :3] = 1.0
        excitation[3] = torch.tensor([-0.2, 0.0, 0.001, 1.0, 1.2, 0.5])
    joint = torch.cat([q, qd], 1).double()
    rest = arm_at_rest(p, xp, joint)
    force = rest.force * (0.5 + torch.rand(batch, 6, generator=g).double())
    activation, excitation = activation.double(), excitation.double()
    load = (torch.randn(batch, 2, generator=g) * 5).double()
    return p, xp, (joint, activation, force, rest.hand.clone(), excitation, load)


def _step(p, xp, hand_written):
    def step(joint, activation, force, hand, excitation, load):
        state = ArmState(joint, activation, None, None, force, hand)
        if hand_written:
            return tuple(arm_step_function(p, xp, state, excitation, load))
        return tuple(arm_step_terms(p, xp, state, excitation, load)[0])

    return step


def test_arm_backward_equals_autograd_through_every_operation():
    p, xp, inputs = _arm_inputs()
    leaves = [x.clone().requires_grad_() for x in inputs]
    ours, autograd = _step(p, xp, True)(*leaves), _step(p, xp, False)(*leaves)
    for a, b in zip(ours, autograd, strict=True):
        assert torch.equal(a, b)  # the same forward
    weights = [torch.randn_like(x) for x in ours]
    g_ours = torch.autograd.grad(sum((o * w).sum() for o, w in zip(ours, weights, strict=True)), leaves)
    g_auto = torch.autograd.grad(sum((o * w).sum() for o, w in zip(autograd, weights, strict=True)), leaves)
    for name, a, b in zip(("joint", "activation", "force", "hand", "excitation", "load"), g_ours, g_auto, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9 * float(b.abs().max()), msg=name)  # float64
        assert b.abs().max() > 0, name


def test_arm_backward_passes_gradcheck_in_float64():
    p, xp, inputs = _arm_inputs(batch=6, seed=1, edges=False)
    leaves = tuple(x.clone().requires_grad_() for x in inputs)
    assert torch.autograd.gradcheck(_step(p, xp, True), leaves, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_gru_gates_backward_passes_gradcheck_in_float64():
    g = torch.Generator().manual_seed(0)
    gates_x, gates_h = (torch.randn(2, 3, 12, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2))
    h = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_GRUGates.apply, (gates_x, gates_h, h))


def _agent(engine: str, env_id: str = "ArmCurlField-v0", frozen: bool = True, device: str = "cpu") -> BPTTAgent:
    controllers = RecurrentControllers("gru", network_seeds(0, 2), 17, 32)
    if frozen:
        controllers.freeze_input_and_output()
    schedule = paper_schedule(8.0, {"NF1": 0, "FF1": 10, "NF2": 5, "FF2": 5})
    if env_id == "ArmReach-v0":
        return BPTTAgent(controllers, schedule, env_id=env_id, batch_size=16, optimizer="adam", lr=3e-3, engine=engine)
    return BPTTAgent(controllers, schedule, seed=0, engine=engine, lr=2e-2, device=device)


def _train(agent: BPTTAgent, batches: int, with_tests: bool = True) -> dict[str, np.ndarray]:
    losses, hands, grads = [], [], []
    for _ in range(batches):
        if with_tests:
            gain = 8.0 if agent.phase.startswith("FF") else 0.0
            hands.append(agent.evaluate_then_train(gain).hand_position)
        else:
            agent.train_batch()
        losses.append(agent.last_loss)
        grads.append({n: p.grad.cpu() for n, p in agent.controllers.named_parameters() if p.requires_grad})
    return {"loss": np.array(losses), "hand": np.array(hands), "grads": grads}


def _assert_same_run(ours: dict, reference: dict) -> None:
    np.testing.assert_allclose(ours["loss"], reference["loss"], rtol=LOSS_RTOL)
    if len(reference["hand"]):
        np.testing.assert_allclose(ours["hand"], reference["hand"], rtol=0, atol=HAND_ATOL_M)
    for mine, theirs in zip(ours["grads"], reference["grads"], strict=True):
        assert mine.keys() == theirs.keys()
        for name in theirs:
            scale = float(theirs[name].abs().max())
            torch.testing.assert_close(mine[name], theirs[name], rtol=0, atol=GRAD_RTOL * scale, msg=name)


def test_the_engines_train_alike_over_20_batches_through_the_schedule():
    """Losses, every gradient, and the learning curve's hand paths of the test reaches."""
    reference = _train(_agent("reference"), 20)
    assert reference["loss"][0].min() > 0 and not np.allclose(reference["loss"][0], reference["loss"][-1])
    for engine in ("eager", "compiled"):
        agent = _agent(engine)
        assert agent.engine == engine
        _assert_same_run(_train(agent, 20), reference)
        assert agent.engine == engine  # no silent fallback


@pytest.mark.skipif(GPU.startswith("cuda") and not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_compiled_engine_on_the_gpu_trains_like_the_reference_on_the_cpu():
    """Run by `savings-gym bench gpu` on a GPU machine (and on the CPU by its --dry-run)."""
    reference = _train(_agent("reference"), 5)
    agent = _agent("compiled", device=GPU)
    _assert_same_run(_train(agent, 5), reference)
    assert agent.engine == "compiled" and agent.controllers.w_hh.device.type == torch.device(GPU).type


def test_compiled_pretraining_learns_input_and_output_layers_like_the_reference():
    reference = _train(_agent("reference", "ArmReach-v0", frozen=False), 3, with_tests=False)
    assert {"w_ih", "b_ih", "w_out", "b_out", "w_hh", "h0"} <= reference["grads"][0].keys()
    _assert_same_run(_train(_agent("compiled", "ArmReach-v0", frozen=False), 3, with_tests=False), reference)


def test_evaluate_then_train_equals_evaluate_followed_by_train():
    apart, together = _agent("reference"), _agent("compiled")
    record = apart.evaluate(0.0)
    apart.train_batch()
    both = together.evaluate_then_train(0.0)
    np.testing.assert_allclose(both.hand_position, record.hand_position, rtol=0, atol=HAND_ATOL_M)
    np.testing.assert_allclose(both.hidden, record.hidden, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(both.target, record.target)
    assert together.episodes_completed == apart.episodes_completed == 8
    np.testing.assert_allclose(together.last_loss, apart.last_loss, rtol=LOSS_RTOL)


def test_compiled_engine_falls_back_to_eager_where_compiling_fails(monkeypatch):
    import agents.bptt_compiled as compiled

    def broken(*args, **kwargs):
        raise torch._dynamo.exc.TorchDynamoException("no C++ compiler")

    agent = _agent("compiled")
    monkeypatch.setattr(agent._compiled, "_forward", broken)
    with pytest.warns(RuntimeWarning, match="engine='eager'"):
        losses = agent.train_batch()
    assert agent.engine == "eager" and np.isfinite(losses).all()
    np.testing.assert_allclose(losses, _agent("eager").train_batch(), rtol=LOSS_RTOL)
    del compiled


def test_engine_choice_and_bad_engines(monkeypatch):
    lstm = RecurrentControllers("lstm", [0], 17, 8)
    assert BPTTAgent(lstm, paper_schedule(), engine="compiled").engine == "eager"  # the compiled path is GRU-only
    with pytest.raises(ValueError, match="engine must be one of"):
        _agent("fast")
    monkeypatch.setenv("SAVINGS_GYM_BPTT_ENGINE", "reference")
    assert BPTTAgent(RecurrentControllers("gru", [0], 17, 8), paper_schedule()).engine == "reference"
    monkeypatch.setenv("SAVINGS_GYM_BPTT_ENGINE", "bogus")
    with pytest.raises(ValueError, match="SAVINGS_GYM_BPTT_ENGINE"):
        BPTTAgent(RecurrentControllers("gru", [0], 17, 8), paper_schedule())
    assert set(ENGINES) == {"compiled", "eager", "reference"}


def test_advance_adopts_a_state_stepped_outside_the_env_and_counts_the_episode():
    env = DifferentiableArmEnv(8, phase_episodes={"NF1": 8}, differentiable=False)
    with pytest.raises(RuntimeError, match="reset"):
        env.advance(None)
    env.reset(seed=0)
    state, noise = env.state, env.episode_noise
    assert noise.shape == (8, 101, 20)
    with pytest.raises(ValueError, match="steps into this episode"):
        env.advance(state._replace(step=101))
    for t in range(1, 101):
        state, *_ = env.task.step(state, torch.full((8, 6), 0.05), noise[:, t])
    env.advance(state)
    assert env.episodes_completed == 8 and env.phase == "FF1"
    stepped = DifferentiableArmEnv(8, phase_episodes={"NF1": 8}, differentiable=False)
    stepped.reset(seed=0)
    for _ in range(100):
        *_, info = stepped.step(torch.full((8, 6), 0.05))
    torch.testing.assert_close(info["hand_position"], env.state.arm.hand[:, :2])


def test_the_compiled_rollout_refuses_an_env_with_other_dynamics():
    from agents.bptt import paper_loss

    agent = _agent("compiled")
    other = DifferentiableArmEnv(16, num_worlds=2, vision_delay=0.06)
    obs, _ = other.reset(seed=0)
    with pytest.raises(ValueError, match="other dynamics"):
        agent._compiled.run(Episode.of(other, obs), paper_loss)


def _sharded(shards, networks: int = 4, engine: str = "compiled") -> BPTTAgent:
    controllers = RecurrentControllers("gru", network_seeds(0, networks), 17, 32)
    controllers.freeze_input_and_output()
    schedule = paper_schedule(8.0, {"NF1": 0, "FF1": 10, "NF2": 5, "FF2": 5})
    return BPTTAgent(controllers, schedule, seed=0, engine=engine, lr=2e-2, shards=shards)


def test_networks_split_over_worker_processes_train_like_one_process():
    """Two shard workers (real processes, spawned) roll out networks 0-1 and 2-3 of one agent:
    the same 20 batches as the reference engine on all four, to the compiled engine's bounds;
    the weights the workers read are those each SGD step of the agent's process leaves."""
    agent = _sharded(2)
    assert agent.shards == 2 and [p.is_alive() for p in agent._compiled._processes] == [True, True]
    reference = _train(_sharded(1, engine="reference"), 20)
    ours = _train(agent, 20)
    _assert_same_run(ours, reference)
    assert agent.engine == "compiled" and agent.episodes_completed == 160 and agent.phase == "FF2"
    state = agent.state_dict()  # checkpoints hold the agent's own tensors, as without shards
    assert state["controllers"]["w_hh"].shape == (4, 96, 32)
    processes = agent._compiled._processes
    agent.close()
    assert agent.shards == 1 and not any(p.is_alive() for p in processes)
    agent.train_batch()  # on in its own process


def test_a_dead_shard_worker_is_an_error_not_a_silent_gap():
    agent = _sharded(2)
    agent._compiled._processes[1].kill()
    agent._compiled._processes[1].join()
    with pytest.raises(RuntimeError, match="worker .* died"):
        agent.train_batch()


def test_shard_choice_and_bad_shards():
    from agents.bptt_shards import auto_shards, shard_bounds

    assert auto_shards(40, "cpu", threads=2) == 2 and auto_shards(8, "cpu", threads=2) == 2
    assert auto_shards(7, "cpu", threads=2) == 1 and auto_shards(40, "cpu", threads=1) == 1
    assert auto_shards(40, "cuda", threads=16) == 1 and auto_shards(1000, "cpu", threads=16) == 16
    assert shard_bounds(5, 2) == [(0, 3), (3, 5)] and shard_bounds(40, 2) == [(0, 20), (20, 40)]
    assert _sharded(2, engine="eager").shards == 1  # shards are the compiled engine's
    for bad in (0, 5, -1, "many", 2.0, True):
        with pytest.raises(ValueError, match="shards must be 'auto' or an integer from 1 to the 4 networks"):
            _sharded(bad)
    with pytest.raises(ValueError, match="shards split the work over CPU processes"):
        BPTTAgent(RecurrentControllers("gru", [0, 1], 17, 8), paper_schedule(), shards=2, device="meta")
