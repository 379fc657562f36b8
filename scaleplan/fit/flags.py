"""What a fit found doubtful, as one list of lines: printed by the summary, stored in the law file's `flags`.

A flag does not stop the fit (refusals do): it marks a number the user should not trust blindly.
"""

from __future__ import annotations

from scaleplan.fit.data import Trials, cell_label
from scaleplan.fit.hyperparameter_law import HyperparameterFit
from scaleplan.fit.isoflop import IsoflopFit
from scaleplan.fit.loss_law import LossLawFit
from scaleplan.fit.multi_axis import MultiAxisFit
from scaleplan.fit.optimum import FLAT_END
from scaleplan.laws.surge import FORMS


def fit_flags(hyper: HyperparameterFit | MultiAxisFit | None = None, loss: LossLawFit | None = None,
              isoflop: IsoflopFit | None = None, extra: tuple[str, ...] = ()) -> list[str]:
    """Every flag of the fits given, cells first, then laws, then `extra` (e.g. an unfinished sweep)."""
    out = list(extra)
    if hyper is not None:
        out += _cell_flags(hyper)
        out += [f for fit in (hyper.lr, hyper.batch_size) if fit is not None for f in fit.flags]
    if isoflop is not None:
        for kind, hit in (("at the edge of the sizes run (excluded)", lambda b: b.at_edge),
                          ("a parabola vertex outside the sizes it was fitted on", lambda b: b.outside_window),
                          ("a non-convex profile (lowest loss used)", lambda b: b.fallback)):
            where = [f"C={b.compute:.3g}" for b in isoflop.budgets if hit(b)]
            if where:
                out.append(f"{len(where)} of {len(isoflop.budgets)} budgets have their optimum {kind}: {', '.join(where)}")
        if isoflop.skipped:
            out.append(f"{len(isoflop.skipped)} budgets skipped (fewer than 3 sizes): "
                       + ", ".join(f"C={c:.3g}" for c in isoflop.skipped))
        out += [*isoflop.n_law.flags, *isoflop.d_law.flags]
    if loss is not None:
        out += list(loss.flags)
    return out


def lost_cells(trials: Trials) -> tuple[str, ...]:
    """Cells of the sweep that lost every trial (failed, diverged or a non-finite loss): the laws are fitted without
    them, so their fitted range quietly shrinks; where every lr diverged, the optimum lies below the swept lrs."""
    if not trials.lost:
        return ()
    return (f"{len(trials.lost)} cell(s) lost every trial (failed, diverged or non-finite: "
            f"{', '.join(f'{n} {why}' for why, n in trials.dropped.items())} in all) and are left out of every law: "
            f"{'; '.join(trials.lost)}; if their runs diverged, sweep lower lrs there",)


def survivor_optima(trials: Trials) -> tuple[str, ...]:
    """Cells where some seeds diverged at the lr whose finite seeds have the lowest mean loss: those seeds are the
    survivors of an unstable lr (the lucky draws finish, the others are dropped), so the optimum located there sits
    where runs fail (a simulated sweep put lr* at lrs where half the seeds diverged; validate then lost 7 of 8)."""
    diverged = trials.diverged
    if diverged is None or diverged.empty or not trials.has_lr:
        return ()
    # the cells' columns (the size always among them), as prepare_trials kept them for the diverged rows too
    columns = [c for c in (*trials.cell_columns, *(["batch_size"] if trials.has_batch else [])) if c in diverged]
    failed = diverged.groupby([*columns, "lr"]).size()
    found = []
    for key, cell in trials.frame.groupby(columns):
        key = key if isinstance(key, tuple) else (key,)  # (pandas before 2 gave a one-column key bare)
        finite = cell.groupby("lr")["loss"].agg(["mean", "size"])
        best = float(finite["mean"].idxmin())
        lost = int(failed.get((*key, best), 0))
        if lost:
            found.append(f"{cell_label(columns, key)}: {lost} of {lost + int(finite.loc[best, 'size'])} at lr {best:.4g}")
    if not found:
        return ()
    return (f"{len(found)} cell(s) lost seeds to divergence at their best lr ({'; '.join(found[:3])}"
            f"{'; ...' if len(found) > 3 else ''}): the seeds that finished there are survivors, so the optimum may sit "
            "where runs diverge; train below it, or sweep more seeds there",)


PRE_ASYMPTOTIC = 1.0  # beta0 / sqrt(N) above which a lse DenseAM's narrowest proxy is off the rules' limit


def pre_asymptotic(overlap_noise: float | None, lr_form: str) -> tuple[str, ...]:
    """A power-law fit of a lse DenseAM whose narrowest proxy has beta0 / sqrt(N) > 1: its lr* still drifts with N
    toward the rules' limit, and the power law extrapolates the drift (beta0 = 16: 2.97% regret at 8x; the
    finite-width form 0.02% at 16x, README DenseAM)."""
    if overlap_noise is None or overlap_noise <= PRE_ASYMPTOTIC or lr_form != "power":
        return ()
    return (f"the narrowest proxy is pre-asymptotic: beta0/sqrt(N) = {overlap_noise:.3g} > {PRE_ASYMPTOTIC:g} (the random "
            "part of a memory overlap), so lr* drifts toward the rules' limit and a power law extrapolates the drift: "
            "refit with --lr-form finite-width",)


def without_a_limit(parametrization: str | None, lr_form: str) -> tuple[str, ...]:
    """A finite-width fit of trials whose parametrization gives lr* no width-independent limit (SP), or is unknown
    (a CSV): the form's asymptote is then an assumption the data may not hold (SP over N: 11.4% regret where the
    power law had 2.3%, benchmarks/results/lr-law-forms.md)."""
    if lr_form != "finite-width" or parametrization in ("mup", "denseam"):
        return ()
    which = f"parametrization {parametrization}" if parametrization else "an unknown parametrization (a CSV)"
    return (f"the finite-width form assumes lr* tends to a width-independent limit, which muP-style rules give; these "
            f"trials come from {which}: check the power law (--lr-form power) beside it",)


def surge_optimizer(optimizer: str | None, lr_form: str) -> tuple[str, ...]:
    """A surge- or saturating-form fit of trials not trained with Adam: the forms are Adam's (their sqrt(B) rise below
    the noise scale); SGD's optimal lr grows linearly in B up to the critical batch instead."""
    if lr_form not in FORMS or optimizer in ("adam", "adamw"):
        return ()
    which = f"optimizer {optimizer}" if optimizer else "an unknown optimizer (a CSV)"
    return (f"the {lr_form} form is derived for Adam (lr* rising as sqrt(B) below the noise scale); these "
            f"trials come from {which}: check the power law (--lr-form power) beside it",)


def _cell_flags(hyper: HyperparameterFit | MultiAxisFit) -> list[str]:
    """Cells whose optimum is at the edge, outside its parabola window, flat, or has a zero-width interval."""
    out = []
    kinds = (
        ("touch the edge of the swept lr range: widen the lr grid there", lambda o, ci: o.at_edge),
        ("have their optimal batch size at the edge of the swept batch sizes (B* there is a bound, not an optimum): "
         "widen the batch grid there", lambda o, ci: o.batch_at_edge),
        ("have a parabola vertex outside the lrs it was fitted on (an extrapolation of the quadratic)", lambda o, ci: o.outside_window),
        ("had a parabola vertex outside the lrs it was fitted on; their optimum is the vertex method's (a window in lr"
         " re-centred on the vertex)", lambda o, ci: o.recentred),
        ("are flat (every trial within the band of the minimum): the sweep locates no optimum there", lambda o, ci: o.flat),
        ("fell back to their best measured lr (no convex parabola through their points): the optimum is only as fine as the "
         "lr grid there", lambda o, ci: o.fallback and not o.flat),
        (f"have an end lr whose mean loss is within {FLAT_END:.1%} of the best (the curve not seen rising there, and a "
         "better basin may lie beyond): widen the lr grid there", lambda o, ci: o.flat_end and not (o.at_edge or o.flat)),
        ("have their optimum where the measured loss is well above the best lr's, two or more lrs away (a quadratic "
         "through two basins puts its vertex on the bump between them): refit with --method vertex or argmin, and "
         "check the curve", lambda o, ci: o.between_basins),
        ("have a zero-width bootstrap interval of lr* (every replicate picked the same grid lr): "
         "the true uncertainty is at least the grid spacing", lambda o, ci: ci[0] == ci[1]),
    )
    for text, hit in kinds:
        where = [o.where(hyper.x) for o, ci in zip(hyper.optima, hyper.cell_lr_ci) if hit(o, ci)]
        if where:
            out.append(f"{len(where)} of {len(hyper.optima)} cells {text}: {'; '.join(where)}")
    return out
