"""The command line's benchmark commands, on short smoke settings."""

import pytest

from benchmarks.cli import main


def test_bench_env_prints_baseline_beside_ours(capsys):
    assert main(["bench", "env", "--quick", "--json"]) == 0
    out = capsys.readouterr().out
    assert "motornet Environment.step B=1" in out and "gym.make(ArmCurlField-v0)" in out
    assert out.count("x ") >= 3 and '"ratio"' in out


def test_bench_bptt_prints_ratios_and_the_extrapolation(capsys):
    assert main(["bench", "bptt", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "baseline nb/s" in out and "today nb/s" in out and "paper protocol" in out


def test_bench_rl_prints_both_sides_and_the_ratio(capsys):
    import torch

    threads = torch.get_num_threads()
    try:
        assert main(["bench", "rl", "--quick", "--n-envs", "8"]) == 0
    finally:
        torch.set_num_threads(threads)  # the bench sets one thread (its default --threads 1)
    out = capsys.readouterr().out
    assert "DummyVecEnv(gym.make)" in out and "SB3VecEnv (ours)" in out
    assert out.count("RecurrentPPO") == 2 and out.count("x\n") >= 2


def test_unknown_command_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["benchmark"])
    assert "invalid choice" in capsys.readouterr().err
