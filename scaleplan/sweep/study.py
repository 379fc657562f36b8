"""One Optuna study per sweep: open it, check it matches the spec, and keep its plan enqueued.

`reconcile` is the bookkeeping that makes sweeps resumable and exactly-once. Under the storage
lock it fails RUNNING trials whose worker died and enqueues one WAITING trial for every planned
slot that has no WAITING, live RUNNING, COMPLETE or PRUNED trial (a pruned slot is finished). Workers then only pop WAITING trials,
which Optuna hands out atomically.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from scaleplan.core.reference import ParametrizationRef
from scaleplan.errors import ScaleplanError
from scaleplan.redact import redact
from scaleplan.sweep.liveness import GRACE_S, is_stale
from scaleplan.sweep.pruner import make_pruner
from scaleplan.sweep.rounds import FINISHED, planned_counts, released
from scaleplan.sweep.sampler import make_sampler
from scaleplan.sweep.spec import SweepSpec, parse_spec, plan_body
from scaleplan.sweep.storage import StorageTarget, open_storage, resolve_storage, storage_lock

FINGERPRINT_ATTR = "scaleplan:fingerprint"
SPEC_ATTR = "scaleplan:spec"
REFERENCE_ATTR = "scaleplan:reference"
PLANNED_ATTR = "scaleplan:planned"
STALE_ATTR = "scaleplan:stale"
SAMPLER_ATTR = "scaleplan:sampler"  # the sampler a study was made with (studies made before it: tpe)
SOURCES_ATTR = "scaleplan:objective_sources"  # each version of a user objective's code the sweep ran, in order

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass
class SweepSession:
    """An opened sweep: its spec, where its study lives, and the study.

    `growing` is True while finishing trials can release more slots (tpe/gp rounds, adaptive rounds).
    """

    spec: SweepSpec
    target: StorageTarget
    storage: optuna.storages.BaseStorage
    study: optuna.Study
    study_id: int
    grace_s: float = GRACE_S
    growing: bool = False


def open_sweep(spec: SweepSpec, storage_url: str | None = None, worker_index: int = 0, grace_s: float = GRACE_S) -> SweepSession:
    """Create or load the sweep's study and bring its plan up to date (safe from many workers at once)."""
    target = resolve_storage(storage_url, spec)
    storage = open_storage(target)
    with storage_lock(target, storage, spec.name):
        sampler, pruner = make_sampler(spec, worker_index), make_pruner(spec)
        try:  # load first: create_study(load_if_exists=True) appends a refused "create" record to a journal each time
            storage.get_study_id_from_name(spec.name)
            study = optuna.load_study(study_name=spec.name, storage=storage, sampler=sampler, pruner=pruner)
        except KeyError:
            study = optuna.create_study(storage=storage, study_name=spec.name, direction="minimize", sampler=sampler, pruner=pruner)
        refuse_other_spec(study, spec, target)
        attrs = study.user_attrs
        if FINGERPRINT_ATTR not in attrs:
            study.set_user_attr(SPEC_ATTR, stored_spec(spec.raw))
            study.set_user_attr(REFERENCE_ATTR, spec.reference.to_dict())
            study.set_user_attr(PLANNED_ATTR, planned_counts(spec))
            study.set_user_attr(FINGERPRINT_ATTR, spec.fingerprint)
            study.set_user_attr(SAMPLER_ATTR, spec.sampler)
        else:
            if attrs.get(SAMPLER_ATTR, "tpe") != spec.sampler:  # the spec names none and the default changed since
                spec = dataclasses.replace(spec, sampler=attrs.get(SAMPLER_ATTR, "tpe"))
                study.sampler = make_sampler(spec, worker_index)
            if stored_spec(attrs.get(SPEC_ATTR, {})) != attrs.get(SPEC_ATTR, {}):  # a first-release study kept the password
                study.set_user_attr(SPEC_ATTR, stored_spec(attrs[SPEC_ATTR]))
        session = SweepSession(spec, target, storage, study, storage.get_study_id_from_name(spec.name), grace_s)
        _reconcile_locked(session)
    return session


def refuse_other_spec(study: optuna.Study, spec: SweepSpec, target: StorageTarget) -> None:
    """Refuse a study made from another spec (its recorded fingerprint differs), or one with trials that records no
    spec (made outside `scaleplan sweep`): its trials would be run, fitted or labelled with this spec's plan and
    parametrization. A study without a spec or trials (a sweep killed while creating it) is this spec's to take."""
    attrs = study.user_attrs
    foreign = [] if FINGERPRINT_ATTR in attrs else study.get_trials(deepcopy=False)
    if foreign:
        raise ScaleplanError(
            f"study '{spec.name}' in {target.display()} holds {len(foreign)} trials that no scaleplan sweep spec made "
            "(it records none); give the sweep another [sweep] name or --storage"
        )
    if attrs.get(FINGERPRINT_ATTR, spec.fingerprint) != spec.fingerprint:
        raise ScaleplanError(
            f"study '{spec.name}' in {target.display()} was made from a different spec "
            f"({_changed_sections(attrs.get(SPEC_ATTR, {}), spec.raw)} changed); "
            "restore the spec or give the changed sweep a new [sweep] name"
        )


def note_objective_source(session: SweepSession, source: dict[str, str] | None) -> None:
    """Record the user objective's code file and hash, and warn when it changed since the sweep last ran: the trials
    it finished ran the other version, and the fit would mix both (the spec's fingerprint cannot see code)."""
    if source is None:
        return
    seen = session.study.user_attrs.get(SOURCES_ATTR, [])
    if seen and seen[-1] == source:
        return
    finished = [t for t in session.study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    session.study.set_user_attr(SOURCES_ATTR, [*seen, source] if finished else [source])  # versions that ran trials
    if seen and finished:
        warnings.warn(
            f"the objective's code changed since this sweep last ran ({source['file']}: sha256 {seen[-1]['sha256'][:12]} "
            f"then, {source['sha256'][:12]} now): its {len(finished)} finished trials ran the old code and will be fitted "
            "with the new ones; if the change affects training, give the sweep a new [sweep] name or --storage",
            UserWarning,
            stacklevel=2,
        )


def refuse_other_study(spec: SweepSpec, storage_url: str | None = None) -> None:
    """Refuse now, creating nothing, a study of the spec's name in its storage that `open_sweep` would refuse: `validate`
    checks every spec's before the first sweep trains."""
    target = resolve_storage(storage_url, spec)
    if target.path is not None and not target.path.is_file():
        return
    try:
        study = optuna.load_study(study_name=spec.name, storage=open_storage(target))
    except KeyError:
        return
    refuse_other_spec(study, spec, target)


def stored_spec(raw: dict[str, Any]) -> dict[str, Any]:
    """The spec as the study keeps it: JSON values, and no password (a [sweep] storage URL is redacted)."""
    data = json.loads(json.dumps(raw, default=str))
    sweep = data.get("sweep")
    if isinstance(sweep, dict) and isinstance(sweep.get("storage"), str):
        sweep["storage"] = redact(sweep["storage"])
    return data


def study_reference(study: optuna.Study) -> ParametrizationRef | None:
    """The parametrization reference a sweep study records (None for a study not made by `scaleplan sweep`)."""
    attrs = study.user_attrs
    if REFERENCE_ATTR in attrs:
        return ParametrizationRef.from_dict(attrs[REFERENCE_ATTR], origin=f"study '{study.study_name}'")
    if SPEC_ATTR in attrs:  # made before the reference was recorded: rebuild it from the stored spec
        return parse_spec(attrs[SPEC_ATTR], source=f"study '{study.study_name}'").reference
    return None


def _changed_sections(old: dict[str, Any], new: dict[str, Any]) -> str:
    """The spec sections whose plan differs (as the fingerprint sees them), e.g. `[ladder], [search]`."""
    before, after = plan_body(old), plan_body(json.loads(json.dumps(new, default=str)))
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    return ", ".join(f"[{k}]" for k in changed) or "the spec"


def trial_id(session: SweepSession, trial: optuna.trial.FrozenTrial | optuna.Trial) -> int:
    """The storage's id of a trial, by Optuna's public API (trials hold it only in a private field)."""
    return session.storage.get_trial_id_from_study_id_trial_number(session.study_id, trial.number)


def reconcile(session: SweepSession) -> int:
    """Fail stale trials and enqueue every slot without a live trial; returns how many were enqueued."""
    with storage_lock(session.target, session.storage, session.spec.name):
        return _reconcile_locked(session)


def _reconcile_locked(session: SweepSession) -> int:
    now = time.time()
    live: Counter[str] = Counter()
    trials = session.study.get_trials(deepcopy=False)
    for trial in trials:
        slot = trial.user_attrs.get("slot")
        if slot is None:
            continue
        if trial.state == TrialState.RUNNING and is_stale(trial, now, session.grace_s):
            tid = trial_id(session, trial)
            try:
                session.storage.set_trial_system_attr(tid, STALE_ATTR, True)
                session.storage.set_trial_state_values(tid, TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                if session.storage.get_trial(tid).state in FINISHED:
                    live[slot] += 1  # it finished after all
            continue
        if trial.state in (TrialState.WAITING, TrialState.RUNNING, *FINISHED):
            live[slot] += 1
    release = released(session.spec, trials)
    session.growing = release.growing
    if session.study.user_attrs.get(PLANNED_ATTR) != release.planned:
        session.study.set_user_attr(PLANNED_ATTR, release.planned)
    missing = [slot for slot in release.slots if live[slot.key] == 0]
    for slot in missing:
        session.study.enqueue_trial(dict(slot.fixed_params), user_attrs=slot.user_attrs())
    return len(missing)
