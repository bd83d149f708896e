"""Drawing the arm for ``render_mode="rgb_array"`` (matplotlib, off-screen)."""

from __future__ import annotations

import numpy as np


def draw_arm(
    joint: np.ndarray,
    l1: float,
    l2: float,
    start: np.ndarray,
    target: np.ndarray,
    path: np.ndarray,
    size_px: int = 400,
) -> np.ndarray:
    """Renders the arm (shoulder at the origin), the start, the target and the hand path.

    Args:
        joint: shoulder and elbow angles (rad) first; velocities are ignored.
        l1, l2: upper-arm and forearm lengths (m).
        start, target: (2,) positions (m).
        path: (T, 2) hand positions so far (m).
        size_px: width and height of the image.

    Returns:
        (size_px, size_px, 3) uint8 RGB image.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shoulder, elbow = float(joint[0]), float(joint[1])
    elbow_xy = np.array([l1 * np.cos(shoulder), l1 * np.sin(shoulder)])
    hand_xy = elbow_xy + l2 * np.array([np.cos(shoulder + elbow), np.sin(shoulder + elbow)])
    fig = Figure(figsize=(size_px / 100, size_px / 100), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    reach = l1 + l2
    ax.set_xlim(-reach, reach)
    ax.set_ylim(-0.2 * reach, 1.1 * reach)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.plot([0, elbow_xy[0], hand_xy[0]], [0, elbow_xy[1], hand_xy[1]], "-o", color="0.3", lw=6, ms=8)
    if len(path):
        ax.plot(path[:, 0], path[:, 1], color="tab:blue", lw=1.5)
    ax.plot(*start, "s", color="0.5", ms=8)
    ax.plot(*target, "o", color="tab:red", ms=10)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()
