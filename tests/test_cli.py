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
    assert "faithful preset (40 networks x 9,560 batches" in out


def test_engine_ab_loads_a_commits_engine_and_refuses_an_unknown_commit():
    from benchmarks.speed.engine_ab import load_engine

    module = load_engine("HEAD")  # the file as committed, as a module of its own
    assert module.__name__ == "_bptt_compiled_HEAD" and module.CompiledBPTT.__module__ == module.__name__
    with pytest.raises(ValueError, match="cannot read agents/bptt_compiled.py at 'no-such-commit'"):
        load_engine("no-such-commit")


@pytest.mark.parametrize("bad", [["--networks", "0"], ["--networks"], ["--threads", "-1"], ["--repeats", "0"]])
def test_bench_bptt_refuses_bad_sizes_in_one_line(bad, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "bptt", *bad])
    assert exit_.value.code == 2
    assert f"error: {bad[0]} " in capsys.readouterr().err.strip().splitlines()[-1]


def test_bench_rl_prints_both_sides_and_the_ratio(capsys):
    import torch

    threads = torch.get_num_threads()
    try:
        assert main(["bench", "rl", "--quick", "--n-envs", "8"]) == 0
    finally:
        torch.set_num_threads(threads)  # the bench sets one thread (its default --threads 1)
    out = capsys.readouterr().out
    assert "DummyVecEnv(gym.make)" in out and "SB3VecEnv (ours)" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("RecurrentPPO")]
    # the rl preset's 64 reaches per update on 8 arms, both sides, with their ratio
    assert [row[:4] for row in rows] == [
        ["RecurrentPPO", "8", "64", "training"],
        ["RecurrentPPO", "8", "64", "rollouts"],
    ]
    assert all(row[-1].endswith("x") and float(row[-1][:-1]) > 0 for row in rows)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--n-envs", "24"], "arms (--n-envs) must each divide preset 'rl''s 64 reaches per update, got 24"),
        (["--preset", "quick", "--n-envs", "16"], "divide preset 'quick''s 8 reaches per update, got 16"),
        (["--preset", "nope"], "preset (--preset) must be one of"),
    ],
)
def test_bench_rl_refuses_arms_that_do_not_divide_an_update(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "rl", *argv])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_unknown_command_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["benchmark"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.slow
def test_the_gpu_check_runs_every_step_as_a_dry_run_on_the_cpu(capsys):
    """`benchmarks/speed/gpu_check.sh --dry-run` is this command after an install: every step prints its line."""
    assert main(["bench", "gpu", "--dry-run"]) == 0
    out = capsys.readouterr().out
    for line in ("GPU check: CPU (dry run)", "tests on cpu: passed", "sequential MotorNet baseline", "today's path",
                 "compiled engine, K=2", "compiled engine, K=4", "paper protocol slice", "GPU check done"):  # fmt: skip
        assert line in out, line


def test_the_gpu_check_refuses_a_machine_without_a_gpu(monkeypatch):
    from benchmarks.speed import gpu_check

    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        gpu_check.run(dry_run=False)
