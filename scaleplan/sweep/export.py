"""Sweep trials as a pandas DataFrame (one row per trial), and export to CSV or parquet.

The fit stage reads these columns: width, depth, N, D, lr, batch_size, loss, state, diverged (and seed,
steps, other searched params; depth is empty without a depth ladder). `loss` is the objective's loss, empty for diverged trials; `value`
is what Optuna saw (the finite penalty for diverged trials). The last columns carry the sweep's
parametrization reference (`parametrization.name`, `.base_width`, ...), so that a law fitted from
the exported file still knows what its lr is relative to.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scaleplan.core.reference import ParametrizationRef
from scaleplan.errors import InputError, ScaleplanError
from scaleplan.outputs import TRIALS_SUFFIXES, ensure_writable, writing
from scaleplan.sweep.spec import SweepSpec, load_spec
from scaleplan.sweep.storage import open_storage, readable, resolve_storage
from scaleplan.sweep.study import refuse_other_spec, study_reference

if TYPE_CHECKING:
    import optuna
    import pandas as pd

REFERENCE_COLUMNS = tuple(f"parametrization.{k}" for k in ParametrizationRef.__dataclass_fields__)
COLUMNS = ("study", "trial", "state", "width", "depth", "N", "D", "steps", "lr", "batch_size", "loss", "diverged", "seed")
TAIL = ("train_loss", "seconds", "value", "point", "slot", "error")


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial of a sweep study, fit columns first, then other params and attributes."""
    import pandas as pd

    reference = study_reference(study)
    ref_values = {} if reference is None else {  # a list (Adam's betas) as the CSV will hold it
        f"parametrization.{k}": json.dumps(v) if isinstance(v, list) else v for k, v in reference.to_dict().items()}
    rows: list[dict[str, Any]] = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        row = {
            "study": study.study_name,
            "trial": t.number,
            "state": t.state.name,
            **{k: a.get(k) for k in ("width", "depth", "N", "D", "steps", "batch_size", "seed")},
            "loss": a.get("loss"),
            "diverged": bool(a.get("diverged", False)),
            **t.params,
            "value": t.value,
            **{k: v for k, v in a.items() if k not in COLUMNS and k not in ("point", "slot")},
            "point": a.get("point"),
            "slot": a.get("slot"),
            **ref_values,
        }
        rows.append(row)
    extra = sorted({k for r in rows for k in r} - set(COLUMNS) - set(TAIL) - set(REFERENCE_COLUMNS))
    frame = pd.DataFrame(rows, columns=[*COLUMNS, *extra, *TAIL, *(c for c in REFERENCE_COLUMNS if c in ref_values)])
    for col in ("width", "depth", "N", "D", "steps", "batch_size", "seed"):
        frame[col] = frame[col].astype("Int64")
    frame["loss"] = frame["loss"].astype("float64")
    return frame


def frame_reference(frame: pd.DataFrame, source: str) -> ParametrizationRef | None:
    """The parametrization reference carried by an export's `parametrization.*` columns (None without them)."""
    present = [c for c in REFERENCE_COLUMNS if c in frame.columns]
    if not present or frame.empty:
        return None
    rows = frame[present].drop_duplicates()
    if len(rows) > 1:
        names = ", ".join(sorted({str(v) for v in frame.get("parametrization.name", [])}))
        raise InputError(f"{source}: the trials carry {len(rows)} different parametrization references ({names}); fit one sweep at a time")
    return ParametrizationRef.from_dict({c.split(".", 1)[1]: _plain(v) for c, v in rows.iloc[0].items()}, origin=source)


def _plain(value: Any) -> Any:
    """A CSV cell as JSON would hold it: NaN -> None, 64.0 -> 64, numpy scalars -> Python ones, "[0.9, 0.95]" (a list
    as a CSV writes it) -> [0.9, 0.95]."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, str) and value.startswith("["):
        try:
            return json.loads(value)
        except ValueError:  # a hand-edited cell: the reference check names it
            return value
    if isinstance(value, float):
        return None if value != value else int(value) if value.is_integer() else value
    return value


def open_study_readonly(source: str | Path | SweepSpec, study: str | None = None, storage: str | None = None) -> optuna.Study:
    """Load an existing sweep study from a spec (its storage and name; refused if the study was made from another
    spec) or from a storage URL/path."""
    import optuna

    spec = source if isinstance(source, SweepSpec) else None
    text = str(source)
    if spec is None and text.endswith(".toml"):
        spec = load_spec(text)
    if spec is not None:
        target = resolve_storage(storage, spec)
        study = study or spec.name
    else:
        target = resolve_storage(storage or text, None)
    if target.path is not None and target.path.is_dir():
        raise ScaleplanError(f"storage {target.path} is a directory; point --storage at the sweep's storage file in it")
    if target.path is not None and not target.path.is_file():
        raise ScaleplanError(f"no sweep storage at {target.path}: run `scaleplan sweep SPEC` first (or pass --storage)")
    opened = open_storage(readable(target))
    names = [s.study_name for s in opened.get_all_studies()]
    if study is None:
        if len(names) != 1:
            raise ScaleplanError(f"{target.display()} holds {len(names)} studies ({', '.join(names) or 'none'}): name one with --study")
        study = names[0]
    if study not in names:
        raise ScaleplanError(f"no study '{study}' in {target.display()} (studies there: {', '.join(names) or 'none'})")
    loaded = optuna.load_study(study_name=study, storage=opened)
    if spec is not None:  # fit and status read it with this spec's plan and parametrization
        refuse_other_spec(loaded, spec, target)
    return loaded


def load_trials(source: str | Path | SweepSpec, study: str | None = None, storage: str | None = None) -> pd.DataFrame:
    """The trials of a sweep as a DataFrame; `source` is a spec (path or SweepSpec) or a storage URL/path."""
    return trials_frame(open_study_readonly(source, study, storage))


def check_export_path(path: str | Path) -> Path:
    """A .csv or .parquet path in an existing folder (checked before the storage is read)."""
    out = Path(path)
    if out.suffix not in TRIALS_SUFFIXES:
        raise InputError(f"export file must end in .csv or .parquet, got '{out.name}'")
    return ensure_writable(out, "trials", make_folder=False)


def write_trials(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write the trials to `path`: .csv, or .parquet (needs pyarrow), into an existing folder."""
    out = check_export_path(path)
    with writing(out, "trials", make_folder=False) as part:
        if out.suffix == ".csv":
            frame.to_csv(part, index=False)
            return out
        try:
            frame.to_parquet(part, index=False)
        except ImportError:
            raise ScaleplanError("parquet export needs pyarrow: `pip install scaleplan[parquet]`, or export to .csv") from None
    return out
