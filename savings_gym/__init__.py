"""savings-gym: a testbed for savings in motor learning.

Importing the package registers six Gymnasium ids (idempotently):

- ``ArmCurlField-v0``: centre-out reaches through the hidden NF1 -> FF1 -> NF2 -> FF2 schedule.
- ``ArmCurlFieldCued-v0``: the same with the field gain in the observation.
- ``ArmReach-v0``: null-field reaches to random targets, for pretraining.
- ``ArmCurlFieldSpontaneousRecovery-v0``: field A, a short -A, then error-clamp (channel) trials.
- ``ArmCurlFieldInterference-v0``: field A, then -A with no washout.
- ``ArmCurlFieldGradual-v0``: the paper's schedule with FF1's field ramped up gradually.

Each id has a native vector entry point: ``gym.make_vec(id, num_envs=N)`` is one batched
simulation. See :mod:`savings_gym.envs`.

The package is the world the learners act in: it imports nothing of ``agents`` or ``benchmarks``.
"""

from gymnasium.envs.registration import register, registry

from savings_gym.schedule import Phase, Schedule, null_schedule, paper_schedule
from savings_gym.task import TaskParams, centre_out_targets

__version__ = "0.1.0"
TRIAL_STEPS = TaskParams().trial_steps
ENV_IDS = (
    "ArmCurlField-v0",
    "ArmCurlFieldCued-v0",
    "ArmReach-v0",
    "ArmCurlFieldSpontaneousRecovery-v0",
    "ArmCurlFieldInterference-v0",
    "ArmCurlFieldGradual-v0",
)
PARADIGM_IDS = ENV_IDS[3:]
"""The ids of the paradigms beyond A-B-A (issue 21)."""

_ENTRY_POINTS = {
    "ArmCurlField-v0": ("ArmCurlFieldEnv", "ArmCurlFieldVectorEnv"),
    "ArmCurlFieldCued-v0": ("ArmCurlFieldCuedEnv", "ArmCurlFieldCuedVectorEnv"),
    "ArmReach-v0": ("ArmReachEnv", "ArmReachVectorEnv"),
    "ArmCurlFieldSpontaneousRecovery-v0": (
        "ArmCurlFieldSpontaneousRecoveryEnv",
        "ArmCurlFieldSpontaneousRecoveryVectorEnv",
    ),
    "ArmCurlFieldInterference-v0": ("ArmCurlFieldInterferenceEnv", "ArmCurlFieldInterferenceVectorEnv"),
    "ArmCurlFieldGradual-v0": ("ArmCurlFieldGradualEnv", "ArmCurlFieldGradualVectorEnv"),
}

for _env_id, (_single, _vector) in _ENTRY_POINTS.items():
    if _env_id not in registry:
        register(
            id=_env_id,
            entry_point=f"savings_gym.envs:{_single}",
            vector_entry_point=f"savings_gym.envs:{_vector}",
            max_episode_steps=TRIAL_STEPS,
        )

__all__ = [
    "ENV_IDS",
    "PARADIGM_IDS",
    "Phase",
    "Schedule",
    "TaskParams",
    "null_schedule",
    "paper_schedule",
    "centre_out_targets",
]
