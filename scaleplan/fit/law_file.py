"""Turn fits into a `scaleplan.laws.LawFile` (the one JSON format `scaleplan predict --law` reads)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from scaleplan.core.reference import ParametrizationRef
from scaleplan.fit.data import Trials
from scaleplan.fit.hyperparameter_law import LAW_VARIABLE, HyperparameterFit
from scaleplan.fit.loss_law import LossLawFit
from scaleplan.fit.power_law import PowerLawFit
from scaleplan.laws import LawFile, PowerLaw, Provenance, Variable

VARIABLES = {
    "N": ("parameters (non-embedding, as counted by the sweep)", "parameters"),
    "W": ("model width (hidden size)", "units"),
    "D": ("training data", None),  # unit from the command's --d-unit
}
TARGET_UNITS = {"lr": "learning rate"}


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


def build_law_file(meta: LawMetadata, trials: Trials, hyper: HyperparameterFit | None, loss: LossLawFit | None) -> LawFile:
    """A LawFile with the lr / batch power laws and/or the loss law, fitted ranges and provenance."""
    power_laws = []
    used: list[str] = []
    if hyper is not None:
        for fit, unit in ((hyper.lr, TARGET_UNITS["lr"]), (hyper.batch_size, meta.batch_unit)):
            if fit is not None:
                power_laws.append(_power_law(fit, unit))
                used += [v for v in fit.exponents if v not in used]
    if loss is not None:
        used += [v for v in ("N", "D") if v not in used]
    frame = trials.frame
    column = {LAW_VARIABLE[c]: c for c in (trials.x, "D") if c in frame}
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
        parametrization=meta.parametrization, provenance=provenance, notes=_notes(hyper, loss),
    )


def _power_law(fit: PowerLawFit, unit: str) -> PowerLaw:
    return PowerLaw(
        target=fit.target, unit=unit, intercept=fit.intercept, exponents=dict(fit.exponents),
        covariance=None if fit.covariance is None else fit.covariance.tolist(),
        residual_variance=fit.residual_variance, dof=fit.dof, n_points=fit.n_points,
    )


def _notes(hyper: HyperparameterFit | None, loss: LossLawFit | None) -> str:
    """How the covariances were obtained, and the bootstrap intervals the schema has no field for."""
    parts = []
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
