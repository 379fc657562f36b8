"""Quantiles for intervals, in pure Python: the planner prints prediction intervals without importing scipy
(scipy costs ~0.8 s of a cold start that should take ~0.1 s)."""

from __future__ import annotations

import math


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def student_t_cdf(t: float, dof: float) -> float:
    """P(T <= t) for Student's t with `dof` degrees of freedom."""
    tail = 0.5 * _betainc(dof / 2.0, 0.5, dof / (dof + t * t))
    return 1.0 - tail if t >= 0 else tail


def student_t_quantile(p: float, dof: float) -> float:
    """The t with P(T <= t) = p (0 < p < 1), by Newton steps on the CDF from the normal quantile."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"quantile level must be in (0, 1), got {p}")
    if dof <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {dof}")
    if p < 0.5:
        return -student_t_quantile(1.0 - p, dof)
    from statistics import NormalDist  # lazy: `statistics` pulls in random, fractions and decimal

    lo, hi = 0.0, 1.0
    while student_t_cdf(hi, dof) < p:  # bracket, then bisect with Newton steps inside the bracket
        lo, hi = hi, hi * 2.0
    t = min(max(NormalDist().inv_cdf(p), lo), hi)
    log_norm = math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(dof * math.pi)
    for _ in range(200):
        f = student_t_cdf(t, dof) - p
        if abs(f) < 1e-14:
            break
        if f > 0:
            hi = t
        else:
            lo = t
        density = math.exp(log_norm - (dof + 1) / 2 * math.log1p(t * t / dof))
        step = t - f / density
        t = step if lo < step < hi else 0.5 * (lo + hi)
        if hi - lo < 1e-13 * max(1.0, abs(t)):
            break
    return t


def two_sided_quantile(level: float, dof: int | None) -> float:
    """The half-width multiplier of a two-sided interval at `level`: Student-t with `dof`, else normal."""
    from statistics import NormalDist

    p = 0.5 + level / 2.0
    return student_t_quantile(p, dof) if dof else NormalDist().inv_cdf(p)
