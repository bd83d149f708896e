"""``savings-gym run`` and ``savings-gym demo``: build a learner by name, run the protocol, report.

Learners: ``gru`` (the paper's), ``lstm``, ``rnn``, trained by BPTT (:mod:`agents.bptt`).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from agents.bptt import PRETRAINED_DIR, Args, BPTTAgent, load_pretrained, pretrain
from agents.controllers import CELLS
from benchmarks.protocol import Preset, get_preset, run_protocol
from savings_gym.schedule import Schedule

BPTT_AGENTS = tuple(CELLS)


def shipped_pretrained(cell: str, hidden: int) -> Path:
    """Where the project's pretrained networks of a kind live."""
    return PRETRAINED_DIR / f"{cell}{hidden}.pt"


def check_run_arguments(agent: str, hidden: int, networks: int, out: str | Path) -> Path:
    """Validates the command line before any work starts.

    Raises:
        ValueError: naming the argument and what was expected.
    """
    if agent not in BPTT_AGENTS:
        raise ValueError(f"--agent must be one of {list(BPTT_AGENTS)}, got {agent!r}")
    if hidden < 1:
        raise ValueError(f"--hidden must be >= 1, got {hidden}")
    if networks < 1:
        raise ValueError(f"--networks must be >= 1, got {networks}")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ValueError(f"--out {str(out)!r} is not a writable folder ({error.strerror})") from error
    return out


def bptt_agent_factory(cell: str, hidden: int, networks: int, preset: Preset, out: Path, seed: int, device: str):
    """A function schedule -> BPTTAgent starting from pretrained networks.

    Shipped pretrained networks are used when the preset allows and a file with enough networks of
    that kind exists; otherwise the networks are pretrained first (``preset.pretrain_batches``,
    checkpointed in ``out/pretrained.state``, resumable).
    """
    shipped = shipped_pretrained(cell, hidden)
    source = None
    if preset.use_shipped_pretrained and shipped.exists():
        controllers, _ = load_pretrained(shipped)
        if controllers.num_networks >= networks:
            source = shipped
    if source is None:
        args = Args(
            cell=cell,
            hidden=hidden,
            networks=networks,
            seed=seed,
            batches=preset.pretrain_batches,
            device=device,
            out=str(out / "pretrained.pt"),
            log_every=max(1, min(100, preset.pretrain_batches)),
        )
        print(f"pretraining {networks} {cell}-{hidden} networks for {args.batches} batches (no shipped ones fit)")
        pretrain(args)
        source = Path(args.out)
    controllers, meta = load_pretrained(source, networks=range(networks))
    controllers.freeze_input_and_output()

    def make(schedule: Schedule) -> BPTTAgent:
        return BPTTAgent(controllers, schedule, optimizer="sgd", lr=preset.lr, seed=seed, device=device)

    return make, {"pretrained_from": str(source), "pretrained_meta": meta}


def run(
    agent: str,
    hidden: int,
    networks: int,
    preset: str,
    out: str | Path,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    checkpoint_seconds: float = 120.0,
) -> dict:
    """Runs the protocol for a BPTT learner and returns the result dict (also written to ``out``)."""
    preset_obj = get_preset(preset)
    out = check_run_arguments(agent, hidden, networks, out)
    make, provenance = bptt_agent_factory(agent, hidden, networks, preset_obj, out, seed, device)
    config = {
        "agent": agent,
        "hidden": hidden,
        "networks": networks,
        "seed": seed,
        "device": device,
        "env_id": "ArmCurlField-v0",
        **provenance,
    }
    return run_protocol(make, preset_obj, out, config, progress=progress, checkpoint_seconds=checkpoint_seconds)


def summary_table(result: dict) -> str:
    """The savings table printed at the end of a run."""
    m = result["metrics"]["aggregate"]
    p = result["metrics"]["per_network"]

    def ci(d: dict, scale: float = 1.0, fmt: str = "{:+.3f}") -> str:
        return f"{fmt.format(d['estimate'] * scale)}  [{fmt.format(d['low'] * scale)}, {fmt.format(d['high'] * scale)}]"

    rates = [
        f"{r1:.4f} -> {r2:.4f}" if math.isfinite(r1) and math.isfinite(r2) else "no fit"
        for r1, r2 in zip(p["rate_FF1"], p["rate_FF2"], strict=True)
    ]
    lines = [
        f"savings over {m['networks']} networks ({m['networks_with_fit']} with both fits), 95% bootstrap CIs:",
        f"  savings index log(r_FF2/r_FF1)   {ci(m['savings_index'])}",
        f"  networks with r_FF2 > r_FF1      {m['fraction_with_savings'] * 100:.0f}%",
        f"  first-batch error FF1 (cm)       {ci(m['first_error_FF1'], 100, '{:.2f}')}",
        f"  first-batch error FF2 (cm)       {ci(m['first_error_FF2'], 100, '{:.2f}')}",
        f"  networks with smaller FF2 error  {m['fraction_smaller_first_error'] * 100:.0f}%",
        f"  paired t-test on log rates       t = {m['rate_ttest']['t']:.2f}, p = {m['rate_ttest']['p']:.3g}; "
        f"sign-flip test on the median p = {m['rate_ttest']['sign_flip_p']:.3g}",
        "  rate per network (per 5-batch window), FF1 -> FF2: " + ", ".join(rates),
    ]
    return "\n".join(lines)


def with_preset(preset: Preset, **changes) -> Preset:
    """A modified copy of a preset (for measurement sweeps)."""
    return replace(preset, **changes)
