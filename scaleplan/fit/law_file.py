"""Turn fits into a `scaleplan.laws.LawFile` (the one JSON format `scaleplan predict --law` reads)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scaleplan.core.reference import ParametrizationRef
from scaleplan.fit.data import Trials
from scaleplan.fit.hyperparameter_law import LAW_VARIABLE, HyperparameterFit
from scaleplan.fit.loss_law import LossLawFit
from scaleplan.fit.power_law import PowerLawFit
from scaleplan.laws import LawFile, PowerLaw, Provenance, Variable
from scaleplan.laws.schema import WeightDecayLaw

if TYPE_CHECKING:
    from scaleplan.fit.weight_decay import WeightDecayFit

VARIABLES = {
    "N": ("parameters (non-embedding, as counted by the sweep)", "parameters"),
    "W": ("model width (hidden size)", "units"),
    "D": ("training data", None),  # unit from the command's --d-unit
}
TARGET_UNITS = {"lr": "learning rate", "wd_tau": "fraction of the run (tau = B / (lr * lambda * D))"}


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


def build_law_file(meta: LawMetadata, trials: Trials, hyper: HyperparameterFit | None, loss: LossLawFit | None,
                   weight_decay: WeightDecayFit | None = None) -> LawFile:
    """A LawFile with the lr / batch power laws and/or the loss law, the weight-decay timescale law, fitted
    ranges and provenance."""
    power_laws = []
    used: list[str] = []
    if hyper is not None:
        for fit, unit in ((hyper.lr, TARGET_UNITS["lr"]), (hyper.batch_size, meta.batch_unit)):
            if fit is not None:
                power_laws.append(_power_law(fit, unit))
                used += [v for v in fit.exponents if v not in used]
    if weight_decay is not None:
        power_laws.append(_timescale_law(weight_decay))
        used += [v for v in ("N", "D") if v not in used]
    if loss is not None:
        used += [v for v in ("N", "D") if v not in used]
    frame = trials.frame
    column = {LAW_VARIABLE[c]: c for c in (trials.x, "N", "D") if c in frame}
    variables = [
        Variable(name=v, meaning=VARIABLES[v][0], unit=VARIABLES[v][1] or meta.d_unit)
        for v in ("N", "W", "D") if v in used
    ]
    fitted_range = {v: (float(frame[column[v]].min()), float(frame[column[v]].max())) for v in used if v in column}
    provenance = Provenance(
        source="scaleplan fit", citation=meta.citation, data_sha256=meta.data_sha256,
        date=_dt.date.today().isoformat(), command=meta.command,
    )
    return LawFile(
        name=meta.name, title=meta.title, variables=variables, power_laws=power_laws,
        loss_law=None if loss is None else loss.law, fitted_range=fitted_range,
        method=None if hyper is None else hyper.label,
        parametrization=meta.parametrization, provenance=provenance, notes=_notes(hyper, loss, weight_decay),
        weight_decay=None if weight_decay is None else WeightDecayLaw(convention=weight_decay.convention),
    )


def _timescale_law(fit: WeightDecayFit) -> PowerLaw:
    """tau* = c * (D/N)^b written over N and D, so that `predict(params=, tokens=)` evaluates it."""
    intercept, exponents, covariance = fit.tau_law_in_n_and_d()
    tau = fit.tau
    return PowerLaw(target=tau.target, unit=TARGET_UNITS["wd_tau"], intercept=intercept, exponents=exponents,
                    covariance=covariance, residual_variance=tau.residual_variance, dof=tau.dof, n_points=tau.n_points)


def _power_law(fit: PowerLawFit, unit: str) -> PowerLaw:
    return PowerLaw(
        target=fit.target, unit=unit, intercept=fit.intercept, exponents=dict(fit.exponents),
        covariance=None if fit.covariance is None else fit.covariance.tolist(),
        residual_variance=fit.residual_variance, dof=fit.dof, n_points=fit.n_points,
    )


def _notes(hyper: HyperparameterFit | None, loss: LossLawFit | None, weight_decay: WeightDecayFit | None = None) -> str:
    """How the covariances were obtained, and the bootstrap intervals the schema has no field for."""
    parts = []
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
    if hyper is not None:
        for fit in (hyper.lr, hyper.batch_size):
            if fit is None:
                continue
            text = f"{fit.target}: covariance {fit.covariance_kind} from statsmodels over {fit.n_points} points"
            if fit.bootstrap_ci:
                cis = ", ".join(f"{k} [{lo:.4g}, {hi:.4g}]" for k, (lo, hi) in fit.bootstrap_ci.items() if k != "intercept")
                text += f"; {hyper.n_boot}-replicate bootstrap (trials resampled within cells) {fit.level:.0%} CIs: {cis}"
            parts.append(text)
        flagged = sum(o.at_edge for o in hyper.optima)
        if flagged:
            parts.append(f"{flagged} of {len(hyper.optima)} cell optima touch the edge of the swept lr range")
    if loss is not None:
        parts.append(f"loss law: Huber (delta 1e-3) on log L over {loss.n_points} points; covariance from {loss.n_boot} bootstrap replicates")
    return "; ".join(parts) + "."
