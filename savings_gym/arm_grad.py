"""The arm step's hand-written backward: one autograd node per step instead of ~200.

BPTT through the arm spends most of its time in autograd's bookkeeping, not in arithmetic: the
fused step of :mod:`savings_gym.arm` is ~120 small tensor operations, each recorded as a node and
each replayed backwards. :func:`arm_step_function` runs the forward without recording and
differentiates it with :func:`arm_step_vjp`, the vector-Jacobian product written out by hand from
the forward's intermediate values (:class:`~savings_gym.arm.StepTerms`).

Non-smooth points follow torch's own conventions, so that the result equals autograd's to
rounding: ``maximum``/``minimum`` (and so ``clip``) pass half the gradient at a tie, ``where``
passes it to the selected branch only. ``tests/test_arm_grad.py`` checks the product against
autograd on the same forward, and with ``torch.autograd.gradcheck`` in float64.
"""

from __future__ import annotations

import torch

from savings_gym.arm import ArmParams, ArmState, MuscleTerms, StepTerms, arm_step_terms
from savings_gym.backend import Backend

Tensor = torch.Tensor


def _max_slope(x: Tensor, floor: Tensor | float) -> Tensor:
    """d maximum(x, floor) / dx as torch computes it: 1 above, 0 below, 1/2 at a tie."""
    return torch.sign(x - floor).add_(1.0).mul_(0.5)


def _clip_slope(x: Tensor, low: Tensor | float, high: Tensor | float) -> Tensor:
    """d minimum(maximum(x, low), high) / dx, torch's convention at ties (see :func:`_max_slope`)."""
    return _max_slope(x, low) * _max_slope(high, torch.maximum(x, torch.as_tensor(low, dtype=x.dtype)))


def muscle_vjp(
    p: ArmParams, m: MuscleTerms, activation: Tensor, mt_length: Tensor, g_muscle_len: Tensor, g_force: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Backward of :func:`~savings_gym.arm.muscle_terms`.

    Args:
        m: the forward's terms; ``activation``, ``mt_length``: its inputs.
        g_muscle_len, g_force: gradients of its outputs (B, 6).

    Returns:
        Gradients with respect to activation, musculotendon length and velocity, each (B, 6).
    """
    act, vel_n = activation, m.vel_n
    g_total = g_force * p.max_iso_force  # force = (active + passive) * max_iso_force
    ratio = m.nom / m.den
    g_ratio = g_total * _max_slope(ratio, 0.0)  # active = max(nom / den, 0)
    g_nom, g_den = g_ratio / m.den, -g_ratio * ratio / m.den
    zero = torch.zeros((), dtype=act.dtype, device=act.device)
    g_nom_s, g_den_s = torch.where(m.shortening, g_nom, zero), torch.where(m.shortening, g_den, zero)
    g_nom_l, g_den_l = g_nom - g_nom_s, g_den - g_den_s
    # shortening: nom = vel_n act a_rel_st + f_x_a b_rel_st, den = b_rel_st - vel_n
    g_vel_n = g_nom_s * act * m.a_rel_st - g_den_s
    g_act = g_nom_s * vel_n * m.a_rel_st
    g_a_rel = g_nom_s * vel_n * act
    g_fxa = g_nom_s * m.b_rel_st
    g_b_rel = g_nom_s * m.f_x_a + g_den_s
    # lengthening: nom = -p1 p3 + p1 s_as vel_n + p2 - p3 vel_n + s_as vel_n^2, den = p1 + vel_n
    g_p1 = g_nom_l * (p.s_as * vel_n - m.p3) + g_den_l
    g_p3 = -g_nom_l * (m.p1 + vel_n)
    g_vel_n = g_vel_n + g_nom_l * (p.s_as * m.p1 - m.p3 + 2.0 * p.s_as * vel_n) + g_den_l
    # p1 = -p_nom / p_den, p2 = p_nom^2 / p_den (g_p2 = g_nom_l), p3 = -eccentric_slope f_x_a
    g_p_nom = (2.0 * g_nom_l * m.p_nom - g_p1) / m.p_den
    g_p_den = -(g_p1 * m.p1 + g_nom_l * m.p2) / m.p_den
    g_fxa = g_fxa + 0.5 * g_p_nom - p.hill_eccentric_slope * g_p3
    # p_den = s_as - 2 dfdvcon0, dfdvcon0 = act (flce + a_rel_st) / b_rel_st, f_x_a = flce act
    g_dfdv_over_b = -2.0 * g_p_den / m.b_rel_st
    g_act = g_act + g_dfdv_over_b * (m.flce + m.a_rel_st) + g_fxa * m.flce
    g_flce = (g_dfdv_over_b + g_fxa) * act
    g_a_rel = g_a_rel + g_dfdv_over_b * act
    g_b_rel = g_b_rel - g_dfdv_over_b * m.dfdvcon0
    # b_rel_st = b_rel b_base^2 below q_crit, b_base = 1 - slope (act - q_crit) / (low - q_crit)
    g_b_base = torch.where(act < p.q_crit, g_b_rel * (2.0 * p.hill_b_rel) * m.b_base, zero)
    g_act = g_act - g_b_base * (p.hill_b_slope / (p.hill_low_activation - p.q_crit))
    # a_rel_st = a_rel flce where len_n > 1; flce = max(1 + (-len_n^2 + 2 len_n - 1) / den, min_flce)
    g_flce = g_flce + torch.where(m.len_n > 1.0, g_a_rel * p.hill_a_rel, zero)
    flce_raw = 1.0 + (-(m.len_n * m.len_n) + 2.0 * m.len_n - 1.0) / p.f_iso_n_den
    g_len_n = g_flce * _max_slope(flce_raw, p.min_flce) * (2.0 - 2.0 * m.len_n) / p.f_iso_n_den
    # len_n = muscle_len / l0_ce; passive = k_pe strain^2, strain = max((muscle_len - l0_pe) / l0_ce, 0)
    # (strain > 0 exactly where its max passes the gradient, so strain itself carries the slope)
    g_muscle_len = g_muscle_len + (g_len_n + g_total * (2.0 * p.k_pe) * m.strain) / p.l0_ce
    g_mt_length = g_muscle_len * _max_slope(mt_length - p.l0_se, 0.0)  # muscle_len = max(mt_len - l0_se, 0)
    return g_act, g_mt_length, g_vel_n / p.vmax


def hand_vjp(p: ArmParams, joint: Tensor, g_hand: Tensor) -> Tensor:
    """Backward of :func:`~savings_gym.arm.hand_kinematics`: (B, 4) hand gradient -> (B, 4) joint gradient."""
    q0, q1, qd0, qd1 = joint.unbind(1)
    q01 = q0 + q1
    c1, s1, c12, s12 = torch.cos(q0), torch.sin(q0), torch.cos(q01), torch.sin(q01)
    x, y = p.l1 * c1 + p.l2 * c12, p.l1 * s1 + p.l2 * s12
    gx, gy, gvx, gvy = g_hand.unbind(1)
    # vx = -y qd0 - l2 s12 qd1, vy = x qd0 + l2 c12 qd1
    gx, gy = gx + gvy * qd0, gy - gvx * qd0
    g_qd0 = gvy * x - gvx * y
    g_qd1 = p.l2 * (gvy * c12 - gvx * s12)
    g_q01 = p.l2 * ((gy - gvx * qd1) * c12 - (gx + gvy * qd1) * s12)  # x, y and the velocities through q01
    g_q0 = g_q01 + p.l1 * (gy * c1 - gx * s1)
    return torch.stack([g_q0, g_q01, g_qd0, g_qd1], dim=1)


def arm_step_vjp(
    p: ArmParams,
    state: ArmState,
    excitation: Tensor,
    endpoint_load: Tensor,
    new_joint: Tensor,
    t: StepTerms,
    grads: ArmState,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Backward of :func:`~savings_gym.arm.arm_step`.

    Args:
        state, excitation, endpoint_load: the step's inputs; ``new_joint``: its output joint state.
        t: the forward's intermediate values.
        grads: gradients of the output state (an :class:`ArmState` of tensors).

    Returns:
        Gradients with respect to ``state.joint``, ``state.activation``, ``state.force``,
        ``state.hand``, ``excitation`` and ``endpoint_load``.
    """
    joint = state.joint
    qd0, qd1 = joint[:, 2], joint[:, 3]
    # hand kinematics, then Euler integration with its clips and joint-limit rule
    g_new_joint = grads.joint + hand_vjp(p, new_joint, grads.hand)
    g_pos = g_new_joint[:, 0:2] * _clip_slope(t.pos, p.pos_lower, p.pos_upper)
    g_vel_sum = g_new_joint[:, 2:4] * t.vel_kept * _clip_slope(t.vel_sum, p.vel_lower, p.vel_upper)
    g_acc = g_vel_sum * p.dt
    g_joint_direct = torch.cat([g_pos, g_vel_sum + g_pos * p.dt], dim=1)

    # the muscles (force from the new activation and the step's starting geometry)
    g_act_new, g_mt_length, g_mt_velocity = muscle_vjp(
        p, t.muscle, t.activation_sum.clamp(p.min_activation, 1.0), t.mt_length, grads.muscle_length, grads.force
    )
    g_mt_velocity = g_mt_velocity + grads.muscle_velocity

    # activation dynamics: new = clip(activation + (e - a) / tau * dt)
    g_sum = (grads.activation + g_act_new) * _clip_slope(t.activation_sum, p.min_activation, 1.0)
    g_d = g_sum * p.dt
    g_e, g_tau = g_d / t.tau, -g_d * t.d_activation / t.tau
    g_tmp = torch.where(t.excitation > t.activation, g_tau * p.tau_activation, -g_tau * t.tau / t.tmp)
    g_a = 1.5 * g_tmp - g_e
    g_activation = g_sum + g_a * _clip_slope(state.activation, p.min_activation, 1.0)
    g_excitation = g_e * _clip_slope(excitation, p.min_activation, 1.0)

    # skeleton: acc = inverse inertia @ rhs
    ga0, ga1 = g_acc.unbind(1)
    inv, i00, i01, i11 = t.inv_det, t.inertia00, t.inertia01, t.inertia11
    g_rhs0, g_rhs1 = inv * (i11 * ga0 - i01 * ga1), inv * (i00 * ga1 - i01 * ga0)
    acc0, acc1 = t.acc.unbind(1)
    g_det = -(ga0 * acc0 + ga1 * acc1) * inv  # d inv_det = -inv_det^2 d det, and acc = inv_det (...)
    g_i00 = inv * ga1 * t.rhs1 + g_det * i11
    g_i11 = inv * ga0 * t.rhs0 + g_det * i00
    g_i01 = -inv * (ga0 * t.rhs1 + ga1 * t.rhs0) - 2.0 * g_det * i01
    g_c2 = g_i00 * p.inertia_m00 + g_i01 * p.inertia_m01 + g_i11 * p.inertia_m11
    # rhs0 = -coriolis0 + torque0 + (-hand_y load_x + hand_x load_y), rhs1 = ... + l2 (-s12 load_x + c12 load_y)
    load_x, load_y = endpoint_load.unbind(1)
    hand_x, hand_y = state.hand[:, 0], state.hand[:, 1]
    zeros = torch.zeros_like(hand_x)
    g_hand = torch.stack([g_rhs0 * load_y, -g_rhs0 * load_x, zeros, zeros], dim=1)
    g_load = torch.stack([-g_rhs0 * hand_y - g_rhs1 * p.l2 * t.s12, g_rhs0 * hand_x + g_rhs1 * p.l2 * t.c12], dim=1)
    g_q01 = p.l2 * g_rhs1 * (-load_x * t.c12 - load_y * t.s12)  # d(-s12 Lx + c12 Ly)/dq01
    # coriolis0 = co1 s2 (2 qd0 + qd1) qd1, coriolis1 = co2 s2 qd0^2 (gradients are -g_rhs)
    g_s2 = -g_rhs0 * p.coriolis_1 * (2.0 * qd0 + qd1) * qd1 - g_rhs1 * p.coriolis_2 * qd0 * qd0
    g_qd0 = -2.0 * t.s2 * (g_rhs0 * p.coriolis_1 * qd1 + g_rhs1 * p.coriolis_2 * qd0)
    g_qd1 = -2.0 * g_rhs0 * p.coriolis_1 * t.s2 * (qd0 + qd1)
    if p.viscosity is not None:
        g_qd0, g_qd1 = g_qd0 - g_rhs0 * p.viscosity, g_qd1 - g_rhs1 * p.viscosity
    if p.damping is not None:
        g_qd0, g_qd1 = g_qd0 - g_rhs0 * p.damping, g_qd1 - g_rhs1 * p.damping
    # torque_j = -sum(force * moment_j)
    g_force = -(g_rhs0[:, None] * t.moment0 + g_rhs1[:, None] * t.moment1)
    g_moment0 = -g_rhs0[:, None] * state.force + g_mt_velocity * qd0[:, None]
    g_moment1 = -g_rhs1[:, None] * state.force + g_mt_velocity * qd1[:, None]

    # muscle geometry: length = poly(q - a3), velocity = qd0 moment0 + qd1 moment1
    g_qd0 = g_qd0 + (g_mt_velocity * t.moment0).sum(1)
    g_qd1 = g_qd1 + (g_mt_velocity * t.moment1).sum(1)
    g_pos0 = (g_mt_length * t.moment0 + g_moment0 * (2.0 * p.geom_a2_shoulder)).sum(1)
    g_pos1 = (g_mt_length * t.moment1 + g_moment1 * (2.0 * p.geom_a2_elbow)).sum(1)
    g_q0 = g_pos0 + g_q01
    g_q1 = g_pos1 + g_q01 + g_s2 * t.c2 - g_c2 * t.s2
    g_joint = g_joint_direct + torch.stack([g_q0, g_q1, g_qd0, g_qd1], dim=1)
    return g_joint, g_activation, g_force, g_hand, g_excitation, g_load


class _ArmStep(torch.autograd.Function):
    """One arm step as one autograd node (see :func:`arm_step_function`)."""

    @staticmethod
    def forward(ctx, p, xp, joint, activation, force, hand, excitation, load):  # noqa: ANN001
        state = ArmState(joint, activation, None, None, force, hand)
        new, terms = arm_step_terms(p, xp, state, excitation, load)
        ctx.p, ctx.terms = p, terms
        ctx.save_for_backward(joint, activation, force, hand, excitation, load, new.joint)
        return tuple(new)

    @staticmethod
    def backward(ctx, *grads):  # noqa: ANN001
        joint, activation, force, hand, excitation, load, new_joint = ctx.saved_tensors
        state = ArmState(joint, activation, None, None, force, hand)
        return (None, None) + arm_step_vjp(ctx.p, state, excitation, load, new_joint, ctx.terms, ArmState(*grads))


def arm_step_function(
    p: ArmParams, xp: Backend, state: ArmState, excitation: Tensor, endpoint_load: Tensor
) -> ArmState:
    """:func:`~savings_gym.arm.arm_step` as one autograd node with the hand-written backward."""
    out = _ArmStep.apply(p, xp, state.joint, state.activation, state.force, state.hand, excitation, endpoint_load)
    return ArmState(*out)
