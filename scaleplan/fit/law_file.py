"""Turn fits into a `scaleplan.laws.LawFile` (the one JSON format `scaleplan predict --law` reads)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from scaleplan.core.reference import ParametrizationRef
from scaleplan.fit.data import Trials
from scaleplan.fit.hyperparameter_law import HyperparameterFit
from scaleplan.fit.isoflop import IsoflopFit
from scaleplan.fit.multi_axis import AXIS_VARIABLE, MultiAxisFit, SizeCriticalBatch
from scaleplan.fit.loss_law import LossLawFit
from scaleplan.fit.power_law import PowerLawFit
from scaleplan.fit.surge import SurgeFit
from scaleplan.fit.summary import interval_rule
from scaleplan.laws import LawFile, PowerLaw, Provenance, Variable
from scaleplan.laws.schema import WeightDecayLaw

if TYPE_CHECKING:
    from scaleplan.fit.weight_decay import WeightDecayFit

VARIABLES = {
    "N": ("parameters (non-embedding, as counted by the sweep)", "parameters", None),
    "W": ("model width (hidden size)", "units", None),
    "L": ("model depth (blocks or layers)", "layers", None),
    "D": ("training data", None, None),  # unit from the command's --d-unit
    "B": ("batch size", None, None),  # unit from the command's --batch-unit
    "C": ("training compute C = 6ND", "FLOPs", "6ND"),
    "R": ("tokens per parameter D/N", "tokens per parameter", None),
}
TARGET_UNITS = {"lr": "learning rate", "N_opt": "parameters", "D_opt": "tokens",
                "wd_tau": "fraction of the run (tau = B / (lr * lambda * D))"}


@dataclass(frozen=True)
class LawMetadata:
    """What the fit cannot know from the numbers: names, units, source, parametrization."""

    name: str
    title: str
    command: str
    data_sha256: str | None
    d_unit: str = "tokens"
    batch_unit: str = "tokens"
    citation: str | None = None
    parametrization: ParametrizationRef | None = None
    swept: dict[str, list[float]] | None = None  # the grid axes the sweep varied, with their values


def build_law_file(meta: LawMetadata, trials: Trials, hyper: HyperparameterFit | MultiAxisFit | None, loss: LossLawFit | None,
                   isoflop: IsoflopFit | None = None, flags: list[str] | tuple[str, ...] = (),
                   weight_decay: WeightDecayFit | None = None) -> LawFile:
    """A LawFile with the lr / batch power laws, the isoFLOP laws and/or the loss law, the weight-decay timescale
    law, fitted ranges, flags, provenance."""
    fits: list[tuple[PowerLawFit, str]] = []
    surge = hyper.surge if isinstance(hyper, MultiAxisFit) else None
    if hyper is not None:
        lr = None if surge is not None else hyper.lr  # the surge form predicts the lr in its place
        fits += [(f, u) for f, u in ((lr, TARGET_UNITS["lr"]), (hyper.batch_size, meta.batch_unit)) if f is not None]
    if isoflop is not None:
        fits += [(isoflop.n_law, TARGET_UNITS["N_opt"]), (isoflop.d_law, meta.d_unit)]
    used: list[str] = []
    inputs = [fit.inputs() for fit, _ in fits] + ([surge.law.inputs()] if surge is not None else [])
    for names in inputs:
        used += [v for v in names if v not in used]
    if loss is not None or isoflop is not None or weight_decay is not None:
        used += [v for v in ("N", "D") if v not in used]
    units = {"D": meta.d_unit, "B": meta.batch_unit}
    variables = [Variable(name=v, meaning=VARIABLES[v][0], unit=VARIABLES[v][1] or units[v], convention=VARIABLES[v][2])
                 for v in VARIABLES if v in used]
    provenance = Provenance(
        source="scaleplan fit", citation=meta.citation, data_sha256=meta.data_sha256,
        date=_dt.date.today().isoformat(), command=meta.command,
    )
    method = hyper.label if hyper is not None else (isoflop.label if isoflop is not None else None)
    power_laws = [power_law_record(f, u) for f, u in fits]
    if isoflop is not None and isoflop.loss_law is not None:
        p = isoflop.loss_law.params  # L*(C) = E + A / C^alpha: a power law with an additive constant
        power_laws.append(PowerLaw(target="loss_opt", unit="loss", intercept=float(np.log(p["A"])), exponents={"C": -p["alpha"]},
                                   offset=p["E"], n_points=isoflop.loss_law.n_points))
    if weight_decay is not None:
        power_laws.append(_timescale_law(weight_decay))
    return LawFile(
        name=meta.name, title=meta.title, variables=variables, power_laws=power_laws,
        loss_law=None if loss is None else loss.law, fitted_range=_fitted_range(trials, used), method=method,
        parametrization=meta.parametrization, provenance=provenance, notes=_notes(hyper, loss, isoflop, fits, weight_decay),
        flags=list(flags), swept=meta.swept or {},
        weight_decay=None if weight_decay is None else WeightDecayLaw(convention=weight_decay.convention),
        surge=None if surge is None else surge.law,
    )


def surge_note(surge: SurgeFit, power: PowerLawFit, n_boot: int) -> str:
    """What the surge-family law's intervals are, its parameters' percentile intervals, and the power law it replaced."""
    cis = ", ".join(f"{k} [{lo:.4g}, {hi:.4g}]" for k, (lo, hi) in surge.bootstrap_ci.items())
    b = power.exponents.get("B")
    exponent = "" if b is None else f" (its lr-batch exponent {b:.4g}, {power.level:.0%} CI [{power.conf_int['B'][0]:.4g}, {power.conf_int['B'][1]:.4g}])"
    return (f"lr: the {surge.law.form} form, unweighted least squares in ln lr* over {surge.n_cells} cells (rms {surge.rms:.3g}); "
            f"prediction intervals: t with {surge.law.dof} dof (Jacobian covariance plus the residual scatter); "
            f"{n_boot}-replicate bootstrap {surge.level:.0%} percentile CIs: {cis}; the power law it replaces: lr = "
            f"{power_law_record(power, TARGET_UNITS['lr']).formula()}{exponent}")


def _timescale_law(fit: WeightDecayFit) -> PowerLaw:
    """tau* = c * (D/N)^b written over N and D, so that `predict(params=, tokens=)` evaluates it."""
    intercept, exponents, covariance = fit.tau_law_in_n_and_d()
    tau = fit.tau
    return PowerLaw(target=tau.target, unit=TARGET_UNITS["wd_tau"], intercept=intercept, exponents=exponents,
                    covariance=covariance, residual_variance=tau.residual_variance, dof=tau.dof, n_points=tau.n_points)


def with_critical_batch(law: LawFile, critical: list[SizeCriticalBatch], unit: str) -> LawFile:
    """The law with a `critical_batch_size` power law in the batch sizes' unit: B_crit = c * prod size^e over the
    sizes that vary (>= 2 of them), or the one size's B_crit with its standard error."""
    import math

    import numpy as np

    from scaleplan.fit.power_law import fit_power_law

    text = "; ".join(f"critical batch at {_where(c.coords)}: B_crit {c.fit.b_crit:.4g}, S_min {c.fit.s_min:.4g} steps "
                     f"(steps to the target loss {c.steps.target_loss:.4g} at {len(c.steps.batch)} batch sizes)"
                     for c in critical)
    notes = f"{law.notes} {text}."
    critical = [c for c in critical if c.determined]  # the others stay in the notes only
    if not critical:
        return replace(law, notes=notes)
    if len(critical) == 1:
        c = critical[0].fit
        se = c.se_ln_b_crit if math.isfinite(c.se_ln_b_crit) and c.se_ln_b_crit < 5 and c.n_points > 2 else None
        power = PowerLaw(target="critical_batch_size", unit=unit, intercept=math.log(c.b_crit), exponents={},
                         covariance=None if se is None else [[se * se]], dof=None if se is None else c.n_points - 2,
                         n_points=c.n_points)
        return replace(law, power_laws=[*law.power_laws, power], notes=notes)
    varying = [k for k in critical[0].coords if len({c.coords[k] for c in critical}) > 1]
    if len(critical) <= len(varying) + 1:
        return replace(law, notes=notes)  # too few sizes for a law over them
    fitted = fit_power_law("critical_batch_size", np.array([c.fit.b_crit for c in critical]),
                           {AXIS_VARIABLE[k]: np.array([c.coords[k] for c in critical]) for k in varying})
    missing = [AXIS_VARIABLE[k] for k in varying if AXIS_VARIABLE[k] not in {v.name for v in law.variables}]
    variables = [*law.variables, *(Variable(name=v, meaning=VARIABLES[v][0], unit=VARIABLES[v][1] or unit) for v in missing)]
    return replace(law, variables=variables, power_laws=[*law.power_laws, power_law_record(fitted, unit)], notes=notes)


def _where(coords: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in coords.items()) or "the one size"


def _fitted_range(trials: Trials, used: list[str]) -> dict[str, tuple[float, float]]:
    """Range of each variable over the trials (C = 6ND and R = D/N derived per trial; a C column wins)."""
    import pandas as pd

    frame = trials.frame
    column = {v: pd.to_numeric(frame[c], errors="coerce").to_numpy(float) for c, v in AXIS_VARIABLE.items() if c in frame}
    if "N" in column and "D" in column:
        column.setdefault("C", 6.0 * column["N"] * column["D"])
        column["R"] = column["D"] / column["N"]
    if "C" in frame:
        column["C"] = frame["C"].to_numpy(float)
    return {v: (float(np.nanmin(column[v])), float(np.nanmax(column[v]))) for v in used if v in column}


def power_law_record(fit: PowerLawFit, unit: str) -> PowerLaw:
    """The law file's record of a fitted power law: what `predict` evaluates, with its intervals."""
    return PowerLaw(
        target=fit.target, unit=unit, intercept=fit.intercept, exponents=dict(fit.exponents),
        covariance=None if fit.covariance is None else fit.covariance.tolist(),
        residual_variance=fit.residual_variance, dof=fit.dof, n_points=fit.n_points,
        bootstrap_covariance=None if fit.cell_bootstrap_covariance is None else fit.cell_bootstrap_covariance.tolist(),
        offset=fit.offset or None, interactions=list(fit.interactions) or None, corrections=list(fit.corrections) or None,
    )


def _notes(hyper: HyperparameterFit | MultiAxisFit | None, loss: LossLawFit | None, isoflop: IsoflopFit | None,
           fits: list[tuple[PowerLawFit, str]], weight_decay: WeightDecayFit | None = None) -> str:
    """How the covariances were obtained, which interval predictions use, and the intervals the schema has no field for."""
    parts = []
    for fit, _ in fits:
        text = (f"{fit.target}: covariance {fit.covariance_kind} from statsmodels over {fit.n_points} points in {fit.n_cells} cells; "
                f"prediction intervals: {interval_rule(fit)}")
        if fit.bootstrap_ci and hyper is not None:
            cis = ", ".join(f"{k} [{lo:.4g}, {hi:.4g}]" for k, (lo, hi) in fit.bootstrap_ci.items() if k != "intercept")
            text += f"; {hyper.n_boot}-replicate bootstrap (trials resampled within cells) {fit.level:.0%} CIs: {cis}"
        parts.append(text)
    if isinstance(hyper, MultiAxisFit) and hyper.surge is not None:
        parts.append(surge_note(hyper.surge, hyper.lr, hyper.n_boot))
    if weight_decay is not None:
        from scaleplan.fit.weight_decay import TPP

        tau = weight_decay.tau
        lo, hi = tau.conf_int[TPP]
        text = (f"wd_tau: optima located by a 2-D quadratic in (ln lr, ln lambda) per cell, {weight_decay.convention} AdamW "
                f"decay; ln tau = a + b ln(D/N) by {tau.covariance_kind} over {tau.n_points} cells, b = {tau.exponents[TPP]:.4g} "
                f"{tau.level:.0%} CI [{lo:.4g}, {hi:.4g}]")
        if TPP in tau.bootstrap_ci:
            blo, bhi = tau.bootstrap_ci[TPP]
            text += f", {weight_decay.n_boot}-replicate bootstrap [{blo:.4g}, {bhi:.4g}]"
        parts.append(text)
    if isoflop is not None and isoflop.loss_law is not None:
        p = isoflop.loss_law.params
        parts.append(f"loss_opt: L*(C) = E + A/C^alpha fitted by Huber (delta 1e-3) on log L* over {isoflop.loss_law.n_points} "
                     "budgets; no interval")
    if loss is not None:
        parts.append(f"loss law: {loss.describe()}; covariance from {loss.n_boot} bootstrap replicates")
    return "; ".join(parts) + "."
