"""The ``savings-gym`` command line.

savings-gym bench env        # environment throughput against MotorNet, with ratios
savings-gym bench rl         # RecurrentPPO training steps/s: our vector env vs SB3's DummyVecEnv
savings-gym run --agent sb3:RecurrentPPO --networks 5 --preset quick --out runs/rppo
savings-gym pretrain --agent sb3:RecurrentPPO --networks 5 --batches 2000
savings-gym sweep --agent gru --hidden 16,32,64,128,256 --networks 8 --preset quick --out runs/size_sweep
savings-gym bench sweep      # cells per hour: the sweep's process pool vs the same cells one after another

Over 500 lines because it is the whole command line in one place: a short handler per command and
the one parser that names them all.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import re
import shlex
import sys
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def _bench_env(args: argparse.Namespace) -> int:
    from benchmarks.speed import env_throughput

    comparisons = env_throughput.run(quick=args.quick)
    machine = platform.processor() or platform.machine()
    print(f"# savings-gym bench env  ({machine}, python {platform.python_version()})")
    print(env_throughput.report(comparisons))
    if args.json:
        print(json.dumps([c.as_dict() for c in comparisons], indent=2))
    return 0


# YAML 1.1 (PyYAML) reads 1e-4 as a string: it wants a dot and a signed exponent (1.0e-4)
_PLAIN_EXPONENT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def _plain_numbers(value: Any) -> Any:
    """``value`` read by YAML with every ``1e-4``-like string in it, at any depth, the number a shell user means."""
    if isinstance(value, str) and _PLAIN_EXPONENT.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, dict):
        return {key: _plain_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain_numbers(item) for item in value]
    return value


def _hyperparams(items: list[str] | None) -> list[dict | str] | None:
    """``--hyperparams`` items: ``key=value`` (the value read as YAML, and ``1e-4`` as the number a
    shell user means, inside mappings too: ``policy_kwargs={optimizer_kwargs: {eps: 1e-3}}``) or the
    path of an rl-zoo3 yaml file."""
    if not items:
        return None
    parsed: list[dict | str] = []
    for item in items:
        if "=" in item:
            import yaml

            key, _, value = item.partition("=")
            try:
                loaded = yaml.safe_load(value)
            except yaml.YAMLError as error:
                raise ValueError(f"--hyperparams {item!r}: the value is not valid YAML ({error})") from error
            parsed.append({key.strip(): _plain_numbers(loaded)})
        else:
            parsed.append(item)
    return parsed


def _learner(args: argparse.Namespace) -> dict:
    """What ``run`` and ``pretrain`` share (``demo`` sets no env or hyperparameters); sets torch's threads."""
    if getattr(args, "threads", 0):
        import torch

        torch.set_num_threads(args.threads)
    return {
        "seed": args.seed,
        "device": args.device,
        "env_id": getattr(args, "env", "ArmCurlField-v0"),
        "hyperparams": _hyperparams(getattr(args, "hyperparams", None)),
    }


def _run(args: argparse.Namespace) -> int:
    from benchmarks.savings.run import run
    from benchmarks.savings.summary import summary_table

    result = run(
        args.agent,
        args.hidden,
        args.networks,
        args.preset,
        args.out,
        checkpoint_seconds=getattr(args, "checkpoint_seconds", 120.0),
        tensorboard=getattr(args, "tensorboard", None),
        task=dict(args.task or []),
        phases=dict(args.phases or []),
        lr=args.lr,
        practice_control="practice" in (args.control or []),
        reset_control="reset" in (args.control or []),
        command=getattr(args, "command_line", None),
        reaches_per_update=getattr(args, "reaches_per_update", None),
        **_learner(args),
    )
    print(summary_table(result))
    print(f"result: {args.out}/result.json, figures: {args.out}/figures/")
    return 0


def _demo(args: argparse.Namespace) -> int:
    args.agent, args.hidden, args.networks, args.preset, args.seed, args.device = "gru", 128, 8, "quick", 0, "cpu"
    # one thread: at these sizes per-operation overhead dominates, a second thread gains ~7% on an idle
    # 2-core machine and makes each batch several times slower when anything else wants a core
    args.threads = 1
    # the practice control by default: savings against FF1 alone would count practice at the task too
    args.control = args.control or ["practice"]
    print(
        "savings-gym demo: 8 pretrained GRU-128 networks relearn a curl field (NF1 -> FF1 -> NF2 -> FF2, quick "
        + (
            "preset), beside the practice control (the same networks, null field until FF2's turn)"
            if "practice" in args.control
            else "preset)"
        )
    )
    return _run(args)


def _pretrain(args: argparse.Namespace) -> int:
    from benchmarks.savings.run import pretrain_agent

    pretrain_agent(
        args.agent,
        args.networks,
        args.batches,
        args.out,
        hidden=args.hidden,
        check_every=args.check_every,
        max_endpoint_error=args.max_endpoint_error_cm / 100,
        max_deviation=args.max_deviation_cm / 100,
        imitate=args.imitate,
        imitation_steps=args.imitation_steps,
        first_network=args.first_network,
        join=args.join,
        **_learner(args),
    )
    return 0


def _bench_rl(args: argparse.Namespace) -> int:
    from benchmarks.speed import rl_throughput

    print(
        rl_throughput.report(
            rl_throughput.run(quick=args.quick, arms=tuple(args.n_envs), threads=args.threads, preset=args.preset)
        )
    )
    return 0


def _bench_bptt(args: argparse.Namespace) -> int:
    from benchmarks.speed import bptt_throughput

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    networks = tuple(args.networks) if args.networks else (1, 8, 40)
    rows = bptt_throughput.run(
        device=args.device, quick=args.quick, networks=networks, levers=args.levers, repeats=args.repeats
    )
    print(bptt_throughput.report(rows))
    return 0


def _bench_gpu(args: argparse.Namespace) -> int:
    from benchmarks.speed import gpu_check

    return gpu_check.main(dry_run=args.dry_run)


def _bench_sweep(args: argparse.Namespace) -> int:
    from benchmarks.speed import sweep_throughput

    print(sweep_throughput.main(quick=args.quick, devices=args.devices, workers=args.workers))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from benchmarks.sweep.cells import FIGURE, MANIFEST, SUMMARY
    from benchmarks.sweep.runner import run_sweep

    manifest = run_sweep(
        args.agent,
        args.hidden,
        args.networks,
        args.preset,
        args.out,
        field_gains=args.field_gain,
        seeds=args.seeds,
        backend=args.backend,
        address=args.address,
        workers=args.workers,
        retries=args.retries,
        cpus_per_cell=args.cpus_per_cell,
        gpus_per_cell=args.gpus_per_cell,
        device=args.device,
        threads=args.threads,
        checkpoint_seconds=args.checkpoint_seconds,
    )
    out = Path(args.out)
    print(f"manifest: {out / MANIFEST}, summary: {out / SUMMARY}, figure: {out / FIGURE}")
    print(f"report: savings-gym report {out}; a cell on the leaderboard: savings-gym leaderboard add {out}/<cell>")
    return 1 if manifest["counts"].get("failed") else 0  # failed cells are named above


def _validate(args: argparse.Namespace) -> None:
    """``leaderboard validate [--format-only]``: one line on the run, and with ``--format-only`` the
    board's admission rules it would still break."""
    from benchmarks.board import entries, schema

    try:
        entry = entries.validate_format(args.path) if args.format_only else entries.validate(args.path, args.board)
    except schema.SubmissionError as error:
        if args.format_only or not any(where == "config/preset/name" for _, where, _ in error.problems):
            raise
        raise ValueError(f"{error} (to check the file's format only: leaderboard validate --format-only)") from None
    aggregate = entry.metrics["aggregate"]
    ranked = "ranked" if entry.ranked else f"listed unranked (fewer than {schema.MIN_NETWORKS})"
    gate = entry.competence
    counted = (
        f"{aggregate['networks']} networks (competence not recorded)"
        if gate is None
        else f"{gate[0]} of {gate[1]} networks reach (the others are left out)"
    )
    if entry.reach is not None:
        counted += f", the reach of {entry.reach[0]} of {entry.reach[1]} held through the run"
    if not args.format_only:
        print(
            f"ok: {entry.name}, {counted}, {entry.measured} measured by "
            f"{schema.RANK_MEASURE}, {entry.fits} with both fits: {ranked}; "
            f"metrics recomputed and matching; preset {entry.preset}"
        )
        return
    print(
        f"format ok: {entry.name}, {counted}; schema, types, units, hashes, curves of the recorded lengths, "
        f"metrics recomputed and matching (preset {entry.preset}); the board's admission rules are not part of it:"
    )
    for _, where, why in entry.refused:
        print(f"  the board would still refuse it: {where}: {why}")
    if not entry.refused:
        print(
            f"  none refuses this run: on the board it would be {ranked} "
            "(leaderboard validate without --format-only also checks it against the board's entries)"
        )


def _leaderboard(args: argparse.Namespace) -> int:
    from benchmarks.board import entries, rendering

    if args.action == "validate":
        _validate(args)
    elif args.action == "add":
        given = {key: getattr(args, key) for key in ("name", "description", "link") if getattr(args, key) is not None}
        print(f"added {entries.add(args.path, args.board, given)}")
    else:
        markdown, page = rendering.render(args.board, args.out)
        print(f"wrote {markdown} and {page}")
    return 0


def _latent(args: argparse.Namespace) -> int:
    from benchmarks.savings.latent import LatentConfig, run_latent

    results = run_latent(args.run_dir, LatentConfig(prep_step=args.prep_step, force_step=args.force_step, tdr=args.tdr))
    p = results["persistence_NF2"]
    print(
        f"NF2 projection on the uniform shift, (x - NF1) / (FF1 - NF1): {p['estimate']:+.3f} "
        f"[{p['low']:+.3f}, {p['high']:+.3f}] over {results['networks']} networks; one-sample t = {p['t']:.2f}, "
        f"p(> 0) = {p['p_greater_than_0']:.3g}"
    )
    print(f"wrote {args.run_dir}/latent/latent.json and figures")
    return 0


def _two_state(args: argparse.Namespace) -> int:
    import numpy as np

    from benchmarks.safe_io import atomic_write_json
    from benchmarks.savings.metrics import format_ci
    from benchmarks.savings.state_space import result_report

    path = args.run_dir / "result.json"
    if not path.exists():
        raise ValueError(f"{path} does not exist: two-state needs a finished run's folder")
    report = result_report(json.loads(path.read_text()))
    atomic_write_json(args.run_dir / "two_state.json", report)

    def ci(d: dict) -> str:
        return format_ci(d, "{:+.3f}")

    print(f"two-state model fitted per network to every phase ({len(report['fits'])} networks)")
    if report["beyond_model"] is None:
        print(f"  no relearning comparison: {report['beyond_model_reason']}")
    else:
        beyond = report["beyond_model"]["aggregate"]
        print(
            f"  {report['relearning']} measured against the model's prediction (above 0: faster than a linear "
            f"two-rate memory explains):\n    log(r_measured / r_predicted), fitted: {ci(beyond['log_rate_ratio'])}\n"
            f"    area / first error, predicted - measured: {ci(beyond['area_difference'])}"
        )
    for phase, states in report.get("predicted_adaptation", {}).items():
        print(
            f"  {phase}: adaptation the fitted model predicts, mean over networks, first and last batch: "
            f"{np.mean(states, 0)[0]:+.3f} -> {np.mean(states, 0)[-1]:+.3f}"
        )
    print(f"wrote {args.run_dir}/two_state.json")
    return 0


def _gradual(args: argparse.Namespace) -> int:
    from benchmarks.safe_io import atomic_write_json
    from benchmarks.savings.metrics import format_ci
    from benchmarks.savings.summary import gradual_comparison

    runs = []
    for name, folder in (("gradual_dir", args.gradual_dir), ("abrupt_dir", args.abrupt_dir)):
        path = folder / "result.json"
        if not path.exists():
            raise ValueError(f"{name}: {path} does not exist; gradual needs two finished runs' folders")
        runs.append(json.loads(path.read_text()))
    report = gradual_comparison(*runs)
    atomic_write_json(args.gradual_dir / "gradual_comparison.json", report)

    def ci(interval: dict, scale: float) -> str:
        return format_ci({key: scale * interval[key] for key in ("estimate", "low", "high")}, "{:+.3f}")

    print("gradual minus abrupt, paired per network (the same networks start both runs):")
    for name, label, scale in (
        ("after_effect", "after-effect, NF2's first window (cm, oriented as the field's errors)", 100.0),
        ("rate_FF2", "FF2 relearning rate (fitted, per window of 5 batches)", 1.0),
        ("area_FF2", "FF2 normalised area (below 0: faster relearning)", 1.0),
    ):
        compared = report.get(f"{name}_difference")
        if compared is None:
            print(f"  {label}: not measured (a phase too short)")
            continue
        print(
            f"  {label}: gradual {ci(compared['gradual'], scale)}, abrupt {ci(compared['abrupt'], scale)}, "
            f"difference {ci(compared['aggregate'], scale)}"
        )
    print(f"wrote {args.gradual_dir}/gradual_comparison.json")
    return 0


def _report(args: argparse.Namespace) -> int:
    from benchmarks.board.report import write_report

    print(f"wrote {write_report(args.run_dir)}")
    return 0


def _integer(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be >= {minimum} (an integer), got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum} (an integer), got {value}")
        return value

    return parse


def _seconds(text: str) -> float:
    """An argparse type: a finite number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds >= 0, got {text!r}")
    return value


def _device(text: str) -> str:
    """An argparse type: a torch device this machine has (cuda only where CUDA is available)."""
    from benchmarks.sweep.runner import check_device

    try:
        check_device(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix(f"--device {text!r}").lstrip(": ")) from None
    return text


def _folder(text: str) -> Path:
    """An argparse type: a folder path that is not an existing file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"expected a folder, {text!r} is a file")
    return path


def _learner_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--agent",
        default="gru",
        help="gru, lstm, rnn (BPTT), sb3:<Algo> (e.g. sb3:RecurrentPPO), or a learner of your own: "
        "path/to/file.py:Class or package.module:Class (README, 'Bring your own learner')",
    )
    parser.add_argument(
        "--hidden", type=int, default=None, help="recurrent units (BPTT: default 128; SB3: the LSTM's, from the yaml)"
    )
    parser.add_argument(
        "--env",
        default="ArmCurlField-v0",
        help="ArmCurlField-v0, ArmCurlFieldCued-v0 (SB3 only), or a paradigm: ArmCurlFieldSpontaneousRecovery-v0, "
        "ArmCurlFieldInterference-v0, ArmCurlFieldGradual-v0",
    )
    parser.add_argument(
        "--hyperparams",
        nargs="+",
        default=None,
        metavar="FILE|KEY=VALUE",
        help="SB3 hyperparameters over the shipped agents/hyperparams/*.yml: rl-zoo3 yaml files and/or key=value",
    )
    parser.add_argument("--seed", type=int, default=0, help="the run's seed")
    parser.add_argument("--device", type=_device, default="cpu", help="torch device")
    parser.add_argument(
        "--threads",
        type=_integer(0),
        default=0,
        help="torch CPU threads (0: torch's default); BPTT learners use them as one process per thread, "
        "each rolling out a share of the networks (at least 4 each)",
    )


def _phase_batches(text: str) -> tuple[str, int]:
    """An argparse type: ``PHASE=BATCHES`` (e.g. ``NF1=240``)."""
    from benchmarks.savings.presets import PARADIGM_PHASES, PHASES

    phase, sep, count = text.partition("=")
    if not sep or phase not in PHASES + PARADIGM_PHASES or not count.isdigit():
        raise argparse.ArgumentTypeError(
            f"expected PHASE=BATCHES with PHASE one of {list(PHASES + PARADIGM_PHASES)}, got {text!r}"
        )
    return phase, int(count)


def _positive_float(text: str) -> float:
    """An argparse type: a positive finite number."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _task_constant(text: str) -> tuple[str, float]:
    """An argparse type: ``NAME=NUMBER`` for a task constant (checked by the task: names and ranges)."""
    name, sep, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = None
    if not sep or not name or number is None:
        raise argparse.ArgumentTypeError(f"expected NAME=NUMBER (e.g. test_go_time=0.44), got {text!r}")
    return name, number


def _protocol_arguments(parser: argparse.ArgumentParser) -> None:
    """What ``run`` and ``demo`` share: the practice control, phase lengths and task constants."""
    parser.add_argument(
        "--control",
        nargs="+",
        choices=("none", "practice", "reset"),
        default=None,
        help="practice: also run the same learners in the null field for NF1+FF1+NF2 batches, then the field; "
        "reset: also run them through FF2 from their state at NF1's start (no memory by construction); both may "
        "be given",
    )
    parser.add_argument(
        "--phases",
        nargs="+",
        type=_phase_batches,
        default=None,
        metavar="PHASE=BATCHES",
        help="replace the preset's batch counts (the run is then not for the board), e.g. NF1=240",
    )
    parser.add_argument(
        "--lr",
        type=_positive_float,
        default=None,
        help="replace the preset's SGD learning rate of BPTT networks and of learners of your own whose constructor "
        "takes lr (the run is then not for the board), e.g. 0.005",
    )
    parser.add_argument(
        "--task",
        nargs="+",
        type=_task_constant,
        default=None,
        metavar="NAME=NUMBER",
        help="task constants over the env's defaults, e.g. test_go_time=0.44 vision_delay=0.06",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="savings-gym", description="A testbed for savings in motor learning.")
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="performance benchmarks (baseline beside ours, same run)")
    which = bench.add_subparsers(dest="what", required=True)
    env = which.add_parser("env", help="environment steps per second vs MotorNet's own stepping")
    env.add_argument("--quick", action="store_true", help="a short smoke run (numbers not for the record)")
    env.add_argument("--json", action="store_true", help="also print the figures as JSON")
    env.set_defaults(handler=_bench_env)
    bptt = which.add_parser("bptt", help="BPTT network-batches per second vs the paper's sequential MotorNet loop")
    bptt.add_argument(
        "--device", type=_device, default="cpu", help="torch device for our side (the baseline runs on the CPU)"
    )
    bptt.add_argument("--quick", action="store_true", help="a short smoke run (numbers not for the record)")
    bptt.add_argument(
        "--levers", action="store_true", help="time each speed-up in turn at the largest K (benchmarks/RESULTS.md)"
    )
    bptt.add_argument(
        "--networks", type=_integer(1), nargs="+", default=None, help="the K values to time (default: 1 8 40)"
    )
    bptt.add_argument(
        "--threads",
        type=_integer(0),
        default=0,
        help="torch CPU threads (0: torch's default); ours runs them as worker processes over the networks",
    )
    bptt.add_argument("--repeats", type=_integer(1), default=3, help="alternating rounds; each rate is the best")
    bptt.set_defaults(handler=_bench_bptt)
    gpu = which.add_parser("gpu", help="on a CUDA machine: the GPU tests and BPTT timings at K=40..1000, one summary")
    gpu.add_argument(
        "--dry-run", action="store_true", help="the same steps on the CPU at toy sizes (checks the script)"
    )
    gpu.set_defaults(handler=_bench_gpu)
    rl = which.add_parser("rl", help="RecurrentPPO training steps/s on our vector env vs SB3's DummyVecEnv of gym.make")
    rl.add_argument("--quick", action="store_true", help="a short smoke run (numbers not for the record)")
    rl.add_argument(
        "--n-envs",
        type=_integer(1),
        nargs="+",
        default=[8, 64],
        help="arms per learner, on both sides, each a divisor of the preset's reaches per update (default: 8 64)",
    )
    rl.add_argument(
        "--preset",
        default="rl",
        help="whose SB3 hyperparameters and reaches per update both sides train with (default: rl; quick: the "
        "shipped yaml at 8 reaches per update)",
    )
    rl.add_argument(
        "--threads", type=_integer(0), default=1, help="torch CPU threads (1: SB3's advice for small networks)"
    )
    rl.set_defaults(handler=_bench_rl)
    sweep_bench = which.add_parser("sweep", help="sweep cells per hour: process pool vs one after another")
    sweep_bench.add_argument("--quick", action="store_true", help="a short smoke run (numbers not for the record)")
    sweep_bench.add_argument("--devices", action="store_true", help="time a protocol slice on the CPU and the GPU")
    sweep_bench.add_argument(
        "--workers", type=_integer(1), default=None, help="the sweep's processes (default: one per CPU)"
    )
    sweep_bench.set_defaults(handler=_bench_sweep)

    run = commands.add_parser("run", help="run the savings protocol for a learner")
    _learner_arguments(run)
    run.add_argument("--networks", type=_integer(1), default=8, help="independent networks (SB3: seeds)")
    run.add_argument("--preset", default="quick", help="quick, faithful, rl (SB3 learners), paper or smoke")
    run.add_argument("--out", type=_folder, default="runs/run", help="output folder (resumes a checkpoint found there)")
    run.add_argument("--checkpoint-seconds", type=_seconds, default=120.0, help="seconds between checkpoints")
    run.add_argument("--tensorboard", default=None, help="folder for TensorBoard scalars (needs tensorboard)")
    run.add_argument(
        "--reaches-per-update",
        type=int,
        default=None,
        metavar="R",
        help="training reaches per learner between two curve points, i.e. per update (a multiple of 8; default: "
        "the preset's, 8; phases stay counted in batches of 8 reaches). SB3 learners and your own; not BPTT. "
        "The run is then not for the board",
    )
    _protocol_arguments(run)
    run.set_defaults(handler=_run)

    pre = commands.add_parser("pretrain", help="pretrain learners in the null field and write their weights")
    _learner_arguments(pre)
    pre.add_argument("--networks", type=_integer(1), default=4, help="learners pretrained together")
    pre.add_argument("--batches", type=_integer(1), default=2000, help="budget in batches of 8 episodes per learner")
    pre.add_argument(
        "--out",
        default=None,
        help="weights file (default: under runs/pretrained/; the shipped agents/pretrained/* are replaced only "
        "when named here)",
    )
    pre.add_argument("--check-every", type=_integer(1), default=50, help="SB3: batches between competence checks")
    pre.add_argument("--max-endpoint-error-cm", type=float, default=2.0, help="SB3 competence: mean endpoint error")
    pre.add_argument("--max-deviation-cm", type=float, default=1.0, help="SB3 competence: mean |lateral deviation|")
    pre.add_argument(
        "--imitate",
        default=None,
        metavar="FILE",
        help="SB3: first distil these BPTT networks (e.g. agents/pretrained/gru128.pt; those that meet the "
        "competence criterion themselves, or all if none does), then train by RL",
    )
    pre.add_argument(
        "--imitation-steps", type=_integer(0), default=1500, help="SB3: gradient steps of that distillation"
    )
    pre.add_argument(
        "--first-network",
        type=_integer(0),
        default=0,
        help="BPTT: index of the first network, to pretrain a run's networks in pieces (0, 8, 16, ...)",
    )
    pre.add_argument(
        "--join",
        nargs="+",
        default=None,
        metavar="FILE",
        help="BPTT: instead of training, join the files of a run's pieces into one (--out)",
    )
    pre.set_defaults(handler=_pretrain)

    sweep = commands.add_parser("sweep", help="the protocol over agents x hidden sizes x field gains x seeds")
    sweep.add_argument("--agent", default="gru", help="comma-separated: gru, lstm, rnn, sb3:<Algo>")
    sweep.add_argument("--hidden", default=None, help="comma-separated hidden sizes (default: each agent's own)")
    sweep.add_argument("--networks", type=_integer(1), default=8, help="independent networks per cell")
    sweep.add_argument("--preset", default="quick", help="quick, faithful, rl (SB3 learners), paper or smoke")
    sweep.add_argument("--field-gain", default=None, help="comma-separated curl gains, N*s/m (default: the preset's)")
    sweep.add_argument("--seeds", default="0", help="comma-separated run seeds")
    sweep.add_argument("--out", type=_folder, default="runs/sweep", help="the sweep folder (rerun to resume)")
    sweep.add_argument("--backend", default="local", help="local (process pool) or ray (a running Ray cluster)")
    sweep.add_argument("--address", default=None, help="ray: the cluster, auto or host:port (default: Ray's choice)")
    sweep.add_argument(
        "--workers", type=_integer(1), default=None, help="local: processes (default: CPUs // --threads)"
    )
    sweep.add_argument("--retries", type=_integer(0), default=2, help="further attempts of a failing cell")
    sweep.add_argument(
        "--threads",
        type=_integer(0),
        default=1,
        help="torch threads per cell (0: torch's default; BPTT cells run more than 1 as worker processes)",
    )
    sweep.add_argument("--cpus-per-cell", type=float, default=None, help="ray: CPUs per task (default --threads)")
    sweep.add_argument("--gpus-per-cell", type=float, default=0, help="ray: GPUs per task (fractions allowed)")
    sweep.add_argument("--device", default="cpu", help="torch device of the cells (cuda: BPTT on the GPU)")
    sweep.add_argument(
        "--checkpoint-seconds", type=_seconds, default=120.0, help="seconds between a cell's checkpoints"
    )
    sweep.set_defaults(handler=_sweep)

    demo = commands.add_parser("demo", help="the README's main job: savings in 8 pretrained GRUs")
    demo.add_argument("--out", type=_folder, default="runs/demo", help="output folder")
    _protocol_arguments(demo)
    demo.set_defaults(handler=_demo)

    board = commands.add_parser("leaderboard", help="validate, add and render leaderboard entries")
    actions = board.add_subparsers(dest="action", required=True)
    for action, text in (
        ("validate", "check a submission and recompute its metrics"),
        ("add", "validate, then copy a submission into the leaderboard folder"),
    ):
        sub = actions.add_parser(action, help=text)
        sub.add_argument("path", help="a run folder holding result.json")
        sub.add_argument(
            "--board", type=_folder, default="leaderboard", help="the leaderboard folder (default: leaderboard)"
        )
        sub.set_defaults(handler=_leaderboard)
    actions.choices["validate"].add_argument(
        "--format-only",
        action="store_true",
        help="check the file's format only (e.g. a smoke run): schema, types, units, hashes, curves, metrics; "
        "say which of the board's rules (preset, task, networks) would still refuse it",
    )
    add = actions.choices["add"]
    for flag, text in (
        ("--name", "the entry's name on the board (default: the run's, e.g. sb3:PPO)"),
        ("--description", "what the entry is: the agent, its settings, the command that made it"),
        ("--link", "where to read more (code, paper)"),
    ):
        add.add_argument(flag, help=text + "; set in the copy's submission block")
    render = actions.add_parser("render", help="write LEADERBOARD.md and a static index.html")
    render.add_argument("--board", type=_folder, default="leaderboard", help="the leaderboard folder")
    render.add_argument("--out", type=_folder, default="site", help="output folder")
    render.set_defaults(handler=_leaderboard)

    latent = commands.add_parser("latent", help="preparatory-activity analysis of a finished BPTT run")
    latent.add_argument("run_dir", help="a run folder (with phase_ends/)")
    latent.add_argument("--prep-step", type=int, default=16, help="step of the preparatory state (before the cue)")
    latent.add_argument("--force-step", type=int, default=26, help="step of the endpoint force for the TDR axes")
    latent.add_argument(
        "--tdr",
        choices=("paper", "coefficients"),
        default="paper",
        help="force axes: the paper's pinv of the coefficients (default) or the coefficients themselves",
    )
    latent.set_defaults(handler=_latent)

    two_state = commands.add_parser(
        "two-state", help="fit the two-state (dual-rate) model to a finished run and compare its relearning"
    )
    two_state.add_argument("run_dir", type=Path, help="a run folder holding result.json")
    two_state.set_defaults(handler=_two_state)

    gradual = commands.add_parser(
        "gradual", help="a gradual run against the abrupt run of the same preset: after-effect and relearning"
    )
    gradual.add_argument("gradual_dir", type=Path, help="an ArmCurlFieldGradual-v0 run folder")
    gradual.add_argument("abrupt_dir", type=Path, help="the ArmCurlField-v0 run of the same preset, networks and seed")
    gradual.set_defaults(handler=_gradual)

    report = commands.add_parser("report", help="one HTML page for a run or a sweep")
    report.add_argument("run_dir", help="a run folder holding result.json, or a sweep folder holding sweep.json")
    report.set_defaults(handler=_report)
    return parser


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``savings-gym: error: ...``) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        fail(
            re.sub(r"^argument (\S+?)(/\S+)?: ", r"\1 ", message)
        )  # "--threads must be ...", not "argument --threads: ..."


def printable(text: str) -> str:
    """``text`` on one line with control and format characters (ESC, CR, bidi overrides) escaped:
    an error message may quote a path or a value from a hostile file, and must not drive the terminal."""
    return "".join(
        c if c == " " or unicodedata.category(c)[0] not in "CZ" else ascii(c)[1:-1] for c in " ".join(text.splitlines())
    )


def fail(message: str) -> None:
    """Exits with code 2 after one line on stderr."""
    print(f"savings-gym: error: {printable(message)}", file=sys.stderr)
    sys.exit(2)


@contextlib.contextmanager
def _removed_if_left_empty(folder: Path | None) -> Iterator[None]:
    """Removes ``folder`` after a failure if this command made it and left it empty (a refused run
    must not leave an empty --out folder behind)."""
    made = folder is not None and not folder.exists()
    try:
        yield
    except BaseException:
        if made and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        raise


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["savings-gym", *(sys.argv[1:] if argv is None else argv)])
    out = getattr(args, "out", None)
    try:
        with _removed_if_left_empty(Path(out) if out is not None and args.command != "pretrain" else None):
            return args.handler(args)
    except (ValueError, OSError, RuntimeError) as error:  # bad input: one clear line, no traceback
        fail(str(error) or type(error).__name__)


if __name__ == "__main__":
    sys.exit(main())
