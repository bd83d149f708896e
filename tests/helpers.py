"""Test helpers: a crude joint-space controller that keeps the real arm moving inside its range."""

import numpy as np


def wandering_action(env, t: int, gain: float = 1.0) -> np.ndarray:
    """Excitations tracking slow joint-angle oscillations around the centre-out start posture.

    Shoulder flexion/extension uses pectoralis/deltoid, elbow flexion/extension brachioradialis/
    lateral triceps; the bi-articular muscles hold a small tone. Reads the true joint state
    (a test may peek; an agent may not).
    """
    joint = np.asarray(env.unwrapped.state.arm.joint)[0]
    wanted = np.array([1.047 + 0.3 * np.sin(t / 10), 1.57 + 0.3 * np.sin(t / 13)])
    drive = gain * (wanted - joint[:2]) - 0.1 * joint[2:]
    return np.array(
        [
            0.03 + max(drive[0], 0),
            0.03 + max(-drive[0], 0),
            0.03 + max(drive[1], 0),
            0.03 + max(-drive[1], 0),
            0.03,
            0.03,
        ],
        np.float32,
    )


def run_episode(env, n_steps: int = 100, options=None, seed=0, policy=wandering_action):
    """Resets and steps an env; returns observations (n+1, obs), infos, rewards (n,) and the field
    loads computed after each step (n+1, 2)."""
    obs, info = env.reset(seed=seed, options=options)
    observations, infos, rewards = [obs], [info], []
    loads = [np.asarray(env.unwrapped.state.load)[0].copy()]
    for t in range(n_steps):
        obs, reward, _, _, info = env.step(policy(env, t))
        observations.append(obs)
        infos.append(info)
        rewards.append(reward)
        loads.append(np.asarray(env.unwrapped.state.load)[0].copy())
    return np.array(observations), infos, np.array(rewards), np.array(loads)


def kill_and_resume(command, folder, env=None, cwd=None, settle: float = 2.0):
    """Runs ``command(out)`` once to the end (``folder/whole``) and once killed (SIGKILL) ``settle`` s
    after its first checkpoint, then resumed by the same command (``folder/killed``); returns both
    result.json files as dicts."""
    import json
    import signal
    import subprocess
    import time

    subprocess.run(command(folder / "whole"), check=True, env=env, cwd=cwd, capture_output=True)
    victim = subprocess.Popen(
        command(folder / "killed"), env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checkpoint = folder / "killed" / "checkpoint.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(settle)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (folder / "killed" / "result.json").exists(), "the run ended before it was killed"
    subprocess.run(command(folder / "killed"), check=True, env=env, cwd=cwd, capture_output=True)
    return [json.loads((folder / name / "result.json").read_text()) for name in ("whole", "killed")]
