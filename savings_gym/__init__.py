"""savings-gym: a testbed for savings in motor learning.

Importing the package registers three Gymnasium ids (idempotently):

- ``ArmCurlField-v0``: centre-out reaches through the hidden NF1 -> FF1 -> NF2 -> FF2 schedule.
- ``ArmCurlFieldCued-v0``: the same with the field gain in the observation.
- ``ArmReach-v0``: null-field reaches to random targets, for pretraining.

Each id has a native vector entry point: ``gym.make_vec(id, num_envs=N)`` is one batched
simulation. See :mod:`savings_gym.envs`.
"""

from gymnasium.envs.registration import register, registry

from savings_gym.schedule import Phase, Schedule, null_schedule, paper_schedule
from savings_gym.task import TaskParams, centre_out_targets

__version__ = "0.1.0"
TRIAL_STEPS = TaskParams().trial_steps
ENV_IDS = ("ArmCurlField-v0", "ArmCurlFieldCued-v0", "ArmReach-v0")

_ENTRY_POINTS = {
    "ArmCurlField-v0": ("ArmCurlFieldEnv", "ArmCurlFieldVectorEnv"),
    "ArmCurlFieldCued-v0": ("ArmCurlFieldCuedEnv", "ArmCurlFieldCuedVectorEnv"),
    "ArmReach-v0": ("ArmReachEnv", "ArmReachVectorEnv"),
}

for _env_id, (_single, _vector) in _ENTRY_POINTS.items():
    if _env_id not in registry:
        register(
            id=_env_id,
            entry_point=f"savings_gym.envs:{_single}",
            vector_entry_point=f"savings_gym.envs:{_vector}",
            max_episode_steps=TRIAL_STEPS,
        )

__all__ = ["ENV_IDS", "Phase", "Schedule", "TaskParams", "null_schedule", "paper_schedule", "centre_out_targets"]
