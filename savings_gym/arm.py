"""The body: MotorNet's two-joint, six-muscle arm, stepped as one fused function.

MotorNet is the physics. :func:`make_effector` builds the paper's effector
(``RigidTendonArm26`` with ``RigidTendonHillMuscle``, 0.01 s Euler steps), and :class:`ArmParams`
copies every constant this module uses out of that effector, so nothing here restates MotorNet's
numbers. :func:`arm_step` then does what ``Effector.step`` does (muscle activation dynamics,
Hill-type muscle force, skeleton dynamics with an endpoint load, Euler integration, joint and
velocity limits) in one pass over plain arrays, without MotorNet's per-call dictionaries and
reshapes, and on any :mod:`savings_gym.backend`. ``tests/test_arm.py`` checks it against
MotorNet's own ``Effector.step`` over random actions and loads.

Array shapes: ``B`` arms in a batch, 2 joints (shoulder, elbow), 6 muscles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import motornet as mn
import numpy as np

from savings_gym.backend import NUMPY, Array, Backend, Scalar

N_MUSCLES = 6
MUSCLE_NAMES = ("pectoralis", "deltoid", "brachioradialis", "tricepslat", "biceps", "tricepslong")


def make_effector(timestep: float = 0.01) -> mn.effector.RigidTendonArm26:
    """Builds the paper's MotorNet effector: ``RigidTendonArm26`` + ``RigidTendonHillMuscle``, Euler.

    Args:
        timestep: integration step (s).
    """
    return mn.effector.RigidTendonArm26(muscle=mn.muscle.RigidTendonHillMuscle(), timestep=timestep)


class ArmState(NamedTuple):
    """Everything that changes over time in a batch of arms.

    Attributes:
        joint: (B, 4) shoulder and elbow angle (rad), then their angular velocities (rad/s).
        activation: (B, 6) muscle activation (0.001 to 1).
        muscle_length: (B, 6) contractile-element length (m).
        muscle_velocity: (B, 6) contractile-element velocity (m/s).
        force: (B, 6) muscle force (N).
        hand: (B, 4) fingertip x, y (m), then its velocity x, y (m/s).

    As in MotorNet, muscle length, velocity and force are computed from the geometry at the start
    of a step, so they trail the joint state by one step.
    """

    joint: Array
    activation: Array
    muscle_length: Array
    muscle_velocity: Array
    force: Array
    hand: Array


@dataclass(frozen=True)
class ArmParams:
    """Constants of the arm, read from a MotorNet effector and held as backend arrays.

    Build it with :meth:`from_effector`; every field is a float or a backend array.
    """

    dt: Scalar
    # skeleton (MotorNet TwoDofArm)
    l1: Scalar
    l2: Scalar
    inertia_c00: Scalar
    inertia_c01: Scalar
    inertia_c11: Scalar
    inertia_m00: Scalar
    inertia_m01: Scalar
    inertia_m11: Scalar
    coriolis_1: Scalar
    coriolis_2: Scalar
    viscosity: Scalar | None
    damping: Scalar | None
    pos_lower: Array  # (1, 2) shoulder, elbow
    pos_upper: Array
    vel_lower: Array
    vel_upper: Array
    # muscle geometry: RigidTendonArm26's polynomial moment arms, (1, 6) per joint
    geom_a0: Array
    geom_a1_shoulder: Array
    geom_a1_elbow: Array
    geom_a2_shoulder: Array
    geom_a2_elbow: Array
    geom_a3_shoulder: Scalar
    geom_a3_elbow: Scalar
    # muscle (RigidTendonHillMuscle), (1, 6) arrays
    min_activation: Scalar
    tau_activation: Scalar
    tau_deactivation: Scalar
    max_iso_force: Array
    l0_ce: Array
    l0_se: Array
    l0_pe: Array
    k_pe: Array
    vmax: Array
    s_as: Scalar
    f_iso_n_den: Scalar
    q_crit: Scalar
    min_flce: Scalar
    # constants written into MotorNet's RigidTendonHillMuscle formula (no attribute holds them)
    hill_a_rel: Scalar = 0.41  # force-velocity curvature coefficient a_rel
    hill_b_rel: Scalar = 5.2  # force-velocity curvature coefficient b_rel at full activation
    hill_b_slope: Scalar = 0.9  # how much b_rel falls at low activation
    hill_low_activation: Scalar = 5e-3  # activation at which that fall is complete
    hill_eccentric_slope: Scalar = 1.5  # eccentric (lengthening) force-velocity shape

    @classmethod
    def from_effector(cls, effector: mn.effector.Effector, backend: Backend = NUMPY) -> ArmParams:
        """Copies the constants of a MotorNet ``RigidTendonArm26`` with ``RigidTendonHillMuscle``.

        Raises:
            ValueError: if the effector is of another kind, or integrates in a way this fused
                step does not reproduce (not Euler, or several ministeps).
        """
        if not isinstance(effector, mn.effector.RigidTendonArm26) or type(effector.muscle) is not (
            mn.muscle.RigidTendonHillMuscle
        ):
            raise ValueError(
                "effector must be motornet.effector.RigidTendonArm26 with motornet.muscle.RigidTendonHillMuscle, "
                f"got {type(effector).__name__} with {type(effector.muscle).__name__}"
            )
        if effector.integration_method != "euler" or effector.n_ministeps != 1:
            raise ValueError(
                "the fused arm step reproduces Euler integration with one ministep, got "
                f"integration_method={effector.integration_method!r}, n_ministeps={effector.n_ministeps}"
            )
        sk, mu = effector.skeleton, effector.muscle

        def host(t) -> np.ndarray:
            return np.asarray(t.detach().cpu().numpy() if hasattr(t, "detach") else t, dtype=np.float32)

        def row(t) -> Array:
            return backend.asarray(host(t).reshape(1, -1))

        def scalar(t) -> Scalar:
            return backend.scalar(float(host(t)))

        ic, im = host(sk.inertia_c)[0], host(sk.inertia_m)[0]
        a1, a2, a3 = host(effector.a1).reshape(2, -1), host(effector.a2).reshape(2, -1), host(effector.a3).reshape(2)
        return cls(
            dt=scalar(effector.dt),
            l1=scalar(sk.L1),
            l2=scalar(sk.L2),
            inertia_c00=scalar(ic[0, 0]),
            inertia_c01=scalar(ic[0, 1]),
            inertia_c11=scalar(ic[1, 1]),
            inertia_m00=scalar(im[0, 0]),
            inertia_m01=scalar(im[0, 1]),
            inertia_m11=scalar(im[1, 1]),
            coriolis_1=scalar(sk.coriolis_1),
            coriolis_2=scalar(sk.coriolis_2),
            viscosity=scalar(sk.c_viscosity) if float(sk.c_viscosity) else None,  # None: skip the zero terms
            damping=scalar(effector.damping) if float(effector.damping) else None,
            pos_lower=row(sk.pos_lower_bound),
            pos_upper=row(sk.pos_upper_bound),
            vel_lower=row(sk.vel_lower_bound),
            vel_upper=row(sk.vel_upper_bound),
            geom_a0=row(effector.a0),
            geom_a1_shoulder=row(a1[0]),
            geom_a1_elbow=row(a1[1]),
            geom_a2_shoulder=row(a2[0]),
            geom_a2_elbow=row(a2[1]),
            geom_a3_shoulder=scalar(a3[0]),
            geom_a3_elbow=scalar(a3[1]),
            min_activation=scalar(mu.min_activation),
            tau_activation=scalar(mu.tau_activation),
            tau_deactivation=scalar(mu.tau_deactivation),
            max_iso_force=row(mu.max_iso_force),
            l0_ce=row(mu.l0_ce),
            l0_se=row(mu.l0_se),
            l0_pe=row(mu.l0_pe),
            k_pe=row(mu.k_pe),
            vmax=row(mu.vmax),
            s_as=scalar(mu.s_as),
            f_iso_n_den=scalar(mu.f_iso_n_den),
            q_crit=scalar(mu.q_crit),
            min_flce=scalar(mu.min_flce),
            **{f: backend.scalar(getattr(cls, f)) for f in _HILL_CONSTANTS},
        )


_HILL_CONSTANTS = ("hill_a_rel", "hill_b_rel", "hill_b_slope", "hill_low_activation", "hill_eccentric_slope")


def muscle_geometry(p: ArmParams, joint: Array) -> tuple[Array, Array, Array, Array]:
    """Musculotendon length (m), velocity (m/s) and moment arms (m) for a joint state.

    Returns:
        length (B, 6), velocity (B, 6), shoulder moment arms (B, 6), elbow moment arms (B, 6).
    """
    pos0 = joint[:, 0:1] - p.geom_a3_shoulder
    pos1 = joint[:, 1:2] - p.geom_a3_elbow
    quad0, quad1 = pos0 * p.geom_a2_shoulder, pos1 * p.geom_a2_elbow
    moment0 = (quad0 + quad0) + p.geom_a1_shoulder  # the derivative of the length polynomial
    moment1 = (quad1 + quad1) + p.geom_a1_elbow
    length = (p.geom_a1_shoulder + quad0) * pos0 + (p.geom_a1_elbow + quad1) * pos1
    velocity = joint[:, 2:3] * moment0 + joint[:, 3:4] * moment1
    return length + p.geom_a0, velocity, moment0, moment1


class MuscleTerms(NamedTuple):
    """What :func:`muscle_terms` computes on the way to the force, kept for the hand-written
    backward (:mod:`savings_gym.arm_grad`). All (B, 6); names follow MotorNet's formula."""

    muscle_len: Array
    strain: Array
    len_n: Array
    vel_n: Array
    flce: Array
    a_rel_st: Array
    b_base: Array
    b_rel_st: Array
    dfdvcon0: Array
    f_x_a: Array
    p_nom: Array
    p_den: Array
    p1: Array
    p2: Array
    p3: Array
    shortening: Array
    nom: Array
    den: Array
    force: Array


def muscle_terms(p: ArmParams, xp: Backend, activation: Array, mt_length: Array, mt_velocity: Array) -> MuscleTerms:
    """Hill-type muscle with a rigid tendon (Kistemaker, Wong & Gribble 2010, as in MotorNet), with
    every intermediate value; :func:`muscle_force` returns only the outputs."""
    c = xp.c  # cached constants (see savings_gym.backend)
    muscle_len = xp.maximum(mt_length - p.l0_se, c(0.0))
    strain = xp.maximum((muscle_len - p.l0_pe) / p.l0_ce, c(0.0))
    len_n = muscle_len / p.l0_ce
    vel_n = mt_velocity / p.vmax
    passive = p.k_pe * (strain * strain)
    flce = xp.maximum(c(1.0) + (-(len_n * len_n) + c(2.0) * len_n - c(1.0)) / p.f_iso_n_den, p.min_flce)
    a_rel_st = xp.where(len_n > c(1.0), p.hill_a_rel * flce, p.hill_a_rel)
    b_base = c(1.0) - p.hill_b_slope * ((activation - p.q_crit) / (p.hill_low_activation - p.q_crit))
    b_rel_st = xp.where(activation < p.q_crit, p.hill_b_rel * (b_base * b_base), p.hill_b_rel)
    dfdvcon0 = activation * (flce + a_rel_st) / b_rel_st
    f_x_a = flce * activation
    p_nom = f_x_a * c(0.5)
    p_den = p.s_as - dfdvcon0 * c(2.0)
    p1 = -p_nom / p_den
    p2 = (p_nom * p_nom) / p_den
    p3 = -p.hill_eccentric_slope * f_x_a
    shortening = vel_n < c(0.0)
    nom = xp.where(
        shortening,
        vel_n * activation * a_rel_st + f_x_a * b_rel_st,
        -p1 * p3 + p1 * p.s_as * vel_n + p2 - p3 * vel_n + p.s_as * (vel_n * vel_n),
    )
    den = xp.where(shortening, b_rel_st - vel_n, p1 + vel_n)
    active = xp.maximum(nom / den, c(0.0))
    force = (active + passive) * p.max_iso_force
    return MuscleTerms(
        muscle_len, strain, len_n, vel_n, flce, a_rel_st, b_base, b_rel_st, dfdvcon0, f_x_a, p_nom, p_den,
        p1, p2, p3, shortening, nom, den, force,
    )  # fmt: skip


def muscle_force(
    p: ArmParams, xp: Backend, activation: Array, mt_length: Array, mt_velocity: Array
) -> tuple[Array, Array, Array]:
    """Hill-type muscle with a rigid tendon (Kistemaker, Wong & Gribble 2010, as in MotorNet).

    Returns:
        muscle length (m), muscle velocity (m/s) and force (N), each (B, 6).
    """
    terms = muscle_terms(p, xp, activation, mt_length, mt_velocity)
    return terms.muscle_len, mt_velocity, terms.force


def hand_kinematics(p: ArmParams, xp: Backend, joint: Array) -> Array:
    """Fingertip position (m) and velocity (m/s), (B, 4), from the joint state (B, 4)."""
    q0, qd0, qd1 = joint[:, 0], joint[:, 2], joint[:, 3]
    q01 = q0 + joint[:, 1]
    c12, s12 = xp.cos(q01), xp.sin(q01)
    x = p.l1 * xp.cos(q0) + p.l2 * c12
    y = p.l1 * xp.sin(q0) + p.l2 * s12
    return xp.stack([x, y, -y * qd0 - p.l2 * s12 * qd1, x * qd0 + p.l2 * c12 * qd1], axis=1)


def arm_at_rest(p: ArmParams, xp: Backend, joint: Array) -> ArmState:
    """The state MotorNet's ``Effector.reset`` gives: the joint state, minimal activation, and the
    muscle state that matches them.

    Args:
        joint: (B, 4) joint angles (rad) and velocities (rad/s).
    """
    length, velocity, _, _ = muscle_geometry(p, joint)
    activation = length * xp.c(0.0) + p.min_activation
    muscle_len, muscle_vel, force = muscle_force(p, xp, activation, length, velocity)
    return ArmState(joint, activation, muscle_len, muscle_vel, force, hand_kinematics(p, xp, joint))


class StepTerms(NamedTuple):
    """What :func:`arm_step_terms` computes on the way to the next state, kept for the hand-written
    backward (:mod:`savings_gym.arm_grad`). (B, 6) muscle arrays, (B,) joint scalars, (B, 2) pairs."""

    excitation: Array  # clipped to [min_activation, 1]
    activation: Array  # the state's activation, clipped
    tmp: Array
    tau: Array
    d_activation: Array
    activation_sum: Array  # activation + d_activation * dt, before the clip
    mt_length: Array
    mt_velocity: Array
    moment0: Array
    moment1: Array
    c2: Array
    s2: Array
    c12: Array
    s12: Array
    inertia00: Array
    inertia01: Array
    inertia11: Array
    rhs0: Array
    rhs1: Array
    inv_det: Array
    acc: Array  # (B, 2)
    pos: Array  # (B, 2) before the clip
    vel_sum: Array  # (B, 2) before the clip
    vel_kept: Array  # (B, 2) float: 1 where the joint-limit rule did not zero the velocity
    muscle: MuscleTerms


def arm_step_terms(
    p: ArmParams, xp: Backend, state: ArmState, excitation: Array, endpoint_load: Array
) -> tuple[ArmState, StepTerms]:
    """:func:`arm_step` and every intermediate value its backward needs."""
    c = xp.c  # cached constants (see savings_gym.backend)
    joint = state.joint
    clipped_excitation = xp.clip(excitation, p.min_activation, c(1.0))
    mt_length, mt_velocity, moment0, moment1 = muscle_geometry(p, joint)

    # muscle activation dynamics (Thelen 2003): faster rise than decay, both activation-dependent
    activation = xp.clip(state.activation, p.min_activation, c(1.0))
    tmp = c(0.5) + c(1.5) * activation
    tau = xp.where(clipped_excitation > activation, p.tau_activation * tmp, p.tau_deactivation / tmp)
    d_activation = (clipped_excitation - activation) / tau

    # skeleton dynamics: muscle torques, endpoint load through the Jacobian, Coriolis, inverse inertia
    q1, qd0, qd1 = joint[:, 1], joint[:, 2], joint[:, 3]
    c2, s2 = xp.cos(q1), xp.sin(q1)
    q01 = joint[:, 0] + q1
    c12, s12 = xp.cos(q01), xp.sin(q01)
    torque0 = -xp.sum(state.force * moment0, axis=1)
    torque1 = -xp.sum(state.force * moment1, axis=1)
    if p.damping is not None:
        torque0, torque1 = torque0 - p.damping * qd0, torque1 - p.damping * qd1
    inertia00 = p.inertia_c00 + c2 * p.inertia_m00
    inertia01 = p.inertia_c01 + c2 * p.inertia_m01
    inertia11 = p.inertia_c11 + c2 * p.inertia_m11
    coriolis0 = (p.coriolis_1 * s2 * (c(2.0) * qd0 + qd1)) * qd1
    coriolis1 = (p.coriolis_2 * s2 * qd0) * qd0
    if p.viscosity is not None:
        coriolis0, coriolis1 = coriolis0 + p.viscosity * qd0, coriolis1 + p.viscosity * qd1
    # The Jacobian's columns are the hand position (x, y) and the forearm vector: the load's torques
    # are their cross products with it. x, y come from the state (same joint, same arithmetic).
    hand_x, hand_y = state.hand[:, 0], state.hand[:, 1]
    load_x, load_y = endpoint_load[:, 0], endpoint_load[:, 1]
    rhs0 = -coriolis0 + (torque0 + (-hand_y * load_x + hand_x * load_y))
    rhs1 = -coriolis1 + (torque1 + (-p.l2 * s12 * load_x + p.l2 * c12 * load_y))
    inv_det = c(1.0) / (inertia00 * inertia11 - inertia01 * inertia01)
    acc0 = inv_det * inertia11 * rhs0 + inv_det * -inertia01 * rhs1
    acc1 = inv_det * -inertia01 * rhs0 + inv_det * inertia00 * rhs1

    # Euler integration; muscle force uses the geometry at the start of the step, as MotorNet does
    activation_sum = state.activation + d_activation * p.dt
    new_activation = xp.clip(activation_sum, p.min_activation, c(1.0))
    muscle = muscle_terms(p, xp, new_activation, mt_length, mt_velocity)
    pos = joint[:, 0:2] + joint[:, 2:4] * p.dt
    acc = xp.stack([acc0, acc1], axis=1)
    vel_sum = joint[:, 2:4] + acc * p.dt
    # velocity is clipped before position so that a joint at its limit cannot push further past it
    vel = xp.clip(vel_sum, p.vel_lower, p.vel_upper)
    kept = ~((vel < c(0.0)) & (pos <= p.pos_lower))
    vel = xp.where(kept, vel, c(0.0))
    stopped = (vel > c(0.0)) & (pos >= p.pos_upper)
    vel = xp.where(stopped, c(0.0), vel)
    pos_clipped = xp.clip(pos, p.pos_lower, p.pos_upper)
    new_joint = xp.concat([pos_clipped, vel], axis=1)
    new_state = ArmState(
        new_joint, new_activation, muscle.muscle_len, mt_velocity, muscle.force, hand_kinematics(p, xp, new_joint)
    )
    terms = StepTerms(
        clipped_excitation, activation, tmp, tau, d_activation, activation_sum, mt_length, mt_velocity,
        moment0, moment1, c2, s2, c12, s12, inertia00, inertia01, inertia11, rhs0, rhs1, inv_det, acc,
        pos, vel_sum, xp.as_float(kept & ~stopped), muscle,
    )  # fmt: skip
    return new_state, terms


def arm_step(p: ArmParams, xp: Backend, state: ArmState, excitation: Array, endpoint_load: Array) -> ArmState:
    """Advances a batch of arms by one time step, as MotorNet's ``Effector.step`` does.

    On a differentiable torch backend with gradients enabled, the step is one autograd node with a
    hand-written backward (:mod:`savings_gym.arm_grad`) instead of ~200 recorded operations.

    Args:
        p: the arm's constants, on the same backend as the arrays.
        xp: the backend.
        state: the arms' current state.
        excitation: (B, 6) muscle excitation; clipped to [0.001, 1] like MotorNet.
        endpoint_load: (B, 2) external force on the fingertip (N), held over the step.

    Returns:
        The state one step (``p.dt``) later.
    """
    if xp.hand_written_grads and xp.differentiable and xp.grad_enabled():
        from savings_gym.arm_grad import arm_step_function

        return arm_step_function(p, xp, state, excitation, endpoint_load)
    return arm_step_terms(p, xp, state, excitation, endpoint_load)[0]


def muscle_endpoint_force(p: ArmParams, xp: Backend, joint: Array, force: Array) -> Array:
    """The force (N) the muscles exert at the hand: the joint torques they make, mapped through the
    inverse transposed Jacobian (F = J^-T tau, as the paper's analysis code computes it).

    Args:
        joint: (B, 4) joint state.
        force: (B, 6) muscle forces (N).

    Returns:
        (B, 2) endpoint force.
    """
    _, _, moment0, moment1 = muscle_geometry(p, joint)
    tau0 = -xp.sum(force * moment0, axis=1)
    tau1 = -xp.sum(force * moment1, axis=1)
    q0, q01 = joint[:, 0], joint[:, 0] + joint[:, 1]
    jac11 = -p.l1 * xp.sin(q0) - p.l2 * xp.sin(q01)
    jac12 = -p.l2 * xp.sin(q01)
    jac21 = p.l1 * xp.cos(q0) + p.l2 * xp.cos(q01)
    jac22 = p.l2 * xp.cos(q01)
    # tau = J^T F:  [tau0, tau1] = [[j11, j21], [j12, j22]] [fx, fy]
    det = jac11 * jac22 - jac21 * jac12
    return xp.stack([(jac22 * tau0 - jac21 * tau1) / det, (-jac12 * tau0 + jac11 * tau1) / det], axis=1)
