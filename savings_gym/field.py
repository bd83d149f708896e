"""The curl force field: a velocity-dependent force on the hand, perpendicular to its motion.

F = k [[0, 1], [-1, 0]] v, i.e. Fx = k * vy and Fy = -k * vx, with v the hand velocity (m/s)
and k the gain (N*s/m). With k > 0 the force pushes the hand clockwise of its direction of
motion. The field reaches the arm as MotorNet's ``endpoint_load``: the force computed from the
velocity after one step acts during the next.
"""

from __future__ import annotations

from savings_gym.backend import Array, Backend

MAX_FIELD_GAIN = 100.0
"""Largest curl gain (N*s/m) a schedule or test may use, 12 times the paper's 8; it also bounds
the cued observation."""


def curl_force(hand_velocity: Array, gain: Array, xp: Backend) -> Array:
    """Curl-field force on the hand.

    Args:
        hand_velocity: (B, 2) hand velocity (m/s).
        gain: (B,) curl gain k per arm (N*s/m).
        xp: the arrays' backend.

    Returns:
        (B, 2) force (N).
    """
    vx, vy = hand_velocity[:, 0], hand_velocity[:, 1]
    return xp.stack([gain * vy, -gain * vx], axis=1)
