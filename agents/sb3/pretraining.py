"""Pretraining the SB3 learners ("growing up" in the null field) and the shipped pretrained weights.

:func:`pretrain` warms the learners up by imitating BPTT teachers (:mod:`agents.sb3.imitation`), then
trains them on null-field reaches until they are competent; the weights go to one file of format
:data:`PRETRAINED_FORMAT` (:func:`save_pretrained`, :func:`load_pretrained`)."""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.bptt import PRETRAINED_DIR
from agents.sb3.hyperparams import PRETRAIN_ENV_ID
from agents.sb3.imitation import Competence, Imitation, _check, competent_teachers, imitate
from agents.sb3.learner import SB3Agent, _load_weights, _weights
from agents.sb3.spec import SB3Spec, _plain, collection_episodes
from agents.serialization import atomic_torch_save, load_checkpoint
from savings_gym.schedule import PAPER_BATCH_SIZE, null_schedule

DEFAULT_TEACHER = PRETRAINED_DIR / "gru128.pt"  # the BPTT networks SB3 learners imitate by default


# -- pretraining and pretrained weights -------------------------------------------------------------
PRETRAINED_FORMAT = "savings-gym-sb3-pretrained"


def shipped_pretrained(spec: SB3Spec) -> Path:
    """Where the project's pretrained learners for a spec live: ``agents/pretrained/<algo>[-cued].pt``."""
    return PRETRAINED_DIR / f"{spec.algo.lower()}{'-cued' if spec.cued else ''}.pt"


def save_pretrained(agent: SB3Agent, path: str | Path, meta: Mapping[str, Any]) -> None:
    """Writes the learners' policy weights and normalisation statistics (atomically; no optimiser)."""
    weights = [_weights(learner) for learner in agent.learners]
    blob = {
        "format": PRETRAINED_FORMAT,
        "architecture": agent.spec.architecture(),
        "spec": agent.spec.as_config(),
        "policies": [policy for policy, _ in weights],
        "normalization": [normalization for _, normalization in weights],
        "meta": copy.deepcopy(dict(meta)),
    }
    atomic_torch_save(blob, path)


def load_pretrained(path: str | Path) -> dict[str, Any]:
    """Reads :func:`save_pretrained`'s file safely (``weights_only=True``).

    Raises:
        ValueError: for a file that is not a savings-gym SB3 pretrained file.
    """
    blob = load_checkpoint(path)
    if not isinstance(blob, dict) or blob.get("format") != PRETRAINED_FORMAT:
        raise ValueError(f"{path} is not a savings-gym SB3 pretrained file (format {PRETRAINED_FORMAT!r})")
    return blob


@dataclass
class PretrainArgs:
    """SB3 pretraining in the null field (``savings-gym pretrain --agent sb3:<Algo>``)."""

    batches: int = 2000
    """budget: batches of 8 episodes per learner (stops earlier once every learner is competent)"""
    networks: int = 4
    """learners pretrained together"""
    seed: int = 0
    """the run's seed (learner n: derived_seed(seed, n))"""
    check_every: int = 50
    """batches between competence checks, progress lines and checkpoints"""
    device: str = "cpu"
    """torch device"""
    imitate: str | None = None
    """BPTT networks to distil first (:func:`imitate`), before PPO; None: PPO from scratch"""
    imitation_steps: int = 1500
    """gradient steps of that distillation"""


def pretrain(spec: SB3Spec, args: PretrainArgs, out: str | Path, competent: Competence | None = None) -> dict:
    """Grows SB3 learners up in the null field (``ArmReach-v0``: random starts and targets) until
    ``competent`` says every learner is, or the budget runs out; writes their weights to ``out``.

    With ``args.imitate`` the learners first copy those BPTT networks (:func:`imitate`), then train
    by their own algorithm as usual. With a criterion, they copy only the networks that meet it
    themselves (:func:`competent_teachers`).

    Every ``check_every`` batches the deterministic policies do the 8 test reaches in the null field;
    the weights (``save_pretrained``) and the full training state (``out`` + ``.state``) are written
    then, so rerunning the same call resumes. Each learner is done at the first check it passes:
    the final file holds its weights from that check (RL on the paper's cost can make a competent
    reach worse again), and the latest weights of those that never passed.

    Returns:
        The meta written with the weights: batches done, seconds, the last competence figures and
        whether every learner met the criterion.
    """
    out = Path(out)
    agent = SB3Agent(
        spec,
        null_schedule(),
        args.networks,
        seed=args.seed,
        device=args.device,
        env_id=PRETRAIN_ENV_ID,
        env_kwargs={"cued": spec.cued},
    )
    state_path = out.with_suffix(".state")
    identity = {
        "spec": spec.as_config(),
        "networks": args.networks,
        "seed": args.seed,
        "imitate": args.imitate,
        "imitation_steps": args.imitation_steps if args.imitate else None,
    }
    done, seconds = 0, 0.0
    kept: list[tuple[dict[str, torch.Tensor], dict[str, Any] | None] | None] = [None] * args.networks
    if state_path.exists():
        saved = load_checkpoint(state_path)
        if _plain(saved["identity"]) != _plain(identity):
            raise ValueError(f"{state_path} belongs to another pretraining run; remove it or match its arguments")
        agent.load_state_dict(saved["agent"])
        done, seconds = saved["batches_done"], saved["seconds"]
        kept = saved.get("kept", kept)
        print(f"resuming pretraining at batch {done} from {state_path}", flush=True)
        imitation = saved.get("imitation")
    else:
        imitation = None
    start = time.time() - seconds
    if imitation is None and args.imitate is not None:
        networks, teacher_figures = None, None
        if competent is not None:
            networks, teacher_figures = competent_teachers(args.imitate, competent)
            print(f"teacher networks meeting the criterion: {networks} ({teacher_figures['competent']})", flush=True)
        print(f"imitating {args.imitate} ({args.imitation_steps} steps)", flush=True)
        imitation = imitate(agent, Imitation(args.imitate, networks, steps=args.imitation_steps), seed=args.seed)
        imitation["teacher_competence"] = teacher_figures
    meta: dict[str, Any] = {}
    while True:
        met, figures = _check(agent, competent, args.networks)
        for k, (learner, now_met) in enumerate(zip(agent.learners, met, strict=True)):
            if now_met and kept[k] is None:  # this learner is done: these are the weights it ships with
                kept[k] = _weights(learner)
        elapsed = time.time() - start
        state = {
            "identity": identity,
            "agent": agent.state_dict(),
            "batches_done": done,
            "seconds": elapsed,
            "imitation": imitation,
            "kept": kept,
        }
        atomic_torch_save(state, state_path)
        finished = all(k is not None for k in kept) or done >= args.batches
        if finished and any(k is not None for k in kept):
            for learner, weights in zip(agent.learners, kept, strict=True):  # the state above stays, for a rerun
                if weights is not None:
                    _load_weights(learner.model, learner.normalizer, *weights)
            met, figures = _check(agent, competent, args.networks)
        meta = {
            **asdict(args),
            "batches_done": done,
            "seconds": elapsed,
            "competence": figures,
            "competent": [bool(m) for m in met],
            "all_competent": bool(np.all(met)),
            "imitation": imitation,
        }
        summary = ", ".join(f"{k} {v}" for k, v in figures.items() if not isinstance(v, list | dict))
        print(f"pretraining batch {done}/{args.batches}  {summary}  {elapsed:.0f} s", flush=True)
        save_pretrained(agent, out, meta)
        if finished:
            return meta
        chunk = min(args.check_every, args.batches - done)
        # in whole collections of the spec (a rollout of more than 8 reaches: --reaches-per-update)
        unit = collection_episodes(spec)
        episodes = -(-chunk * PAPER_BATCH_SIZE // unit) * unit
        agent.train(episodes)
        done += episodes // PAPER_BATCH_SIZE
