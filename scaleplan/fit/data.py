"""Read a sweep's trials (a CSV or a sweep export), map and validate columns, drop failed runs.

Every fitter downstream takes the frame this module returns: canonical column names, finite
positive numbers, and only the trials that completed without diverging. A `model` column keys the
cells (two models with equal N and D stay two cells); without one, a cell that repeats a configuration
is refused rather than merged.
"""

from __future__ import annotations

import hashlib
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from scaleplan.errors import FitError, ScaleplanError

# Canonical columns a sweep export carries; any user CSV with these names works as is.
OPTIONAL_COLUMNS = ("D", "batch_size", "state", "diverged", "width", "seed", "N", "model", "C", "lr", "depth", "steps",
                    "weight_decay", "wd_tau", "steps_run")
SIZE_VARIABLES = ("N", "width", "depth")
# Canonical columns that hold numbers; state, diverged and model hold labels.
LR_LIKE = re.compile(r"(^|[^a-z])(lr|learning[ _-]?rate)([^a-z]|$)", re.IGNORECASE)  # lr_peak, learning_rate, ...
LOSS_LIKE = re.compile(r"loss", re.IGNORECASE)  # val_loss, eval/loss, loss_final, ...
KEY_RTOL = 1e-8  # sizes, D, batch sizes and lrs key cells and lr means: values this close are one (float noise)
NUMERIC_COLUMNS = tuple(c for c in (*OPTIONAL_COLUMNS, "loss") if c not in ("state", "diverged", "model"))
_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


@dataclass(frozen=True)
class Trials:
    """Trials ready to fit: `frame` has the canonical columns; `dropped` counts excluded rows by reason."""

    frame: pd.DataFrame
    x: str  # the size variable: "N", "width" or "depth"
    dropped: dict[str, int]
    extra_sizes: tuple[str, ...] = ()  # further size columns beside x (depth beside width): they key cells too
    lost: tuple[str, ...] = ()  # cells (`N=6.4e+07, D=1e+09`, and the batch size where several) whose every trial was dropped
    diverged: pd.DataFrame | None = None  # the diverged trials' cell columns and lr (dropped from `frame`)

    @property
    def has_tokens(self) -> bool:
        """True when D is a column that takes more than one value (the law then depends on D)."""
        return "D" in self.frame and self.frame["D"].nunique() > 1

    @property
    def has_batch(self) -> bool:
        """True when the batch size was swept (it varies within at least one cell): a batch size that differs only
        between cells (chosen per size) was not swept, and its values are no optimum to fit a B* law to."""
        frame = self.frame
        return "batch_size" in frame and bool((frame.groupby(self.cell_columns)["batch_size"].nunique() > 1).any())

    @property
    def has_lr(self) -> bool:
        """True when the trials carry a learning rate (else only a loss law can be fitted)."""
        return "lr" in self.frame

    @property
    def cell_columns(self) -> list[str]:
        """Columns that define a cell: the size variable, plus D and the model id when the frame has them."""
        return [c for c in (self.x, *self.extra_sizes, "D", "model") if c in self.frame]


def parse_column_map(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """`("batch_size=bs", "loss=smooth loss")` -> {"bs": "batch_size", "smooth loss": "loss"} (source -> canonical)."""
    out: dict[str, str] = {}
    for pair in pairs:
        canonical, sep, source = pair.partition("=")
        if not sep or not canonical.strip() or not source.strip():
            raise ScaleplanError(f"--column expects CANONICAL=SOURCE (e.g. batch_size=bs), got '{pair}'")
        if canonical.strip() not in (*OPTIONAL_COLUMNS, "loss"):  # renaming lr to a typo would drop the lr column unseen
            raise ScaleplanError(f"--column {pair}: '{canonical.strip()}' is not a column scaleplan reads; the name before "
                                 f"'=' is one of {', '.join(('loss', *OPTIONAL_COLUMNS))} and the name after it is yours")
        taken = next((other for other, name in out.items() if name == canonical.strip() and other != source.strip()), None)
        if taken is not None:
            raise ScaleplanError(f"--column {pair}: '{canonical.strip()}' is already read from '{taken}'; give one source "
                                 "per column")
        out[source.strip()] = canonical.strip()
    return out


def read_trials(path: str | Path) -> pd.DataFrame:
    """Read a file of trials, CSV or parquet (as `sweep export` writes them); a missing or unreadable file is a one-line
    ScaleplanError."""
    path = Path(path)
    if not path.is_file():
        raise ScaleplanError(f"trials file not found: {path}")
    if path.suffix.lower() == ".parquet":
        try:
            return pd.read_parquet(path)
        except ImportError:
            raise ScaleplanError("reading parquet needs pyarrow: `pip install scaleplan[parquet]`, or export to .csv") from None
        except Exception as exc:  # pyarrow's own errors (ArrowInvalid) have no common base in pandas
            raise ScaleplanError(f"cannot read {path} as parquet ({' '.join(str(exc).split())})") from None
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ScaleplanError(f"cannot read {path} as CSV ({' '.join(str(exc).split())})") from None


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes: the data hash recorded in a law file's provenance."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def frame_sha256(frame: pd.DataFrame) -> str:
    """Hex sha256 of a frame's CSV text (no index): the data hash of trials read from a sweep's storage."""
    return hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()


def prepare_trials(
    raw: pd.DataFrame,
    x: str = "N",
    columns: Mapping[str, str] | None = None,
    batch_unit_scale: float = 1.0,
    source: str = "trials",
    required: tuple[str, ...] = ("lr", "loss"),
    extra_sizes: tuple[str, ...] = (),
) -> Trials:
    """Rename `columns` (source -> canonical), check the needed ones, drop failed/diverged/non-finite rows.

    A `diverged` cell is true, false, yes, no, t, f, y, n, 1 or 0 (any case) or empty (not diverged); a numeric column
    (NUMERIC_COLUMNS) of a kept row holds numbers or nothing: anything else is a one-line FitError naming its column,
    row and value, never a silently dropped or kept run.
    `batch_unit_scale` multiplies batch_size (e.g. 2048 to turn sequences of 2048 tokens into tokens).
    `extra_sizes` are further size columns (e.g. depth beside width) that must be present, finite and positive.
    """
    if x not in SIZE_VARIABLES:
        raise ScaleplanError(f"--x must be one of {', '.join(SIZE_VARIABLES)}, got '{x}'")
    columns = dict(columns or {})
    unknown = [s for s in columns if s not in raw.columns]
    if unknown:
        raise ScaleplanError(
            f"{source}: --column source(s) {unknown} not in the data; its columns are {list(raw.columns)}"
        )
    shadowed = [c for c in columns.values() if c in raw.columns and c not in columns]
    frame = raw.drop(columns=shadowed).rename(columns=columns)  # e.g. loss=smooth loss replaces 'loss'
    needed = [x, *extra_sizes, *required]
    missing = [c for c in needed if c not in frame.columns or frame[c].isna().all()]  # an export leaves unswept ones empty
    if missing and frame.empty:
        raise ScaleplanError(f"{source}: no rows under its header ({list(raw.columns)}): nothing to fit")
    if missing:
        loss_only = "" if "lr" in needed or "lr" in frame.columns else " for a loss-only fit (no lr column: for lr laws, --column lr=SOURCE)"
        other = [v for v in SIZE_VARIABLES if v != x and v in frame.columns and frame[v].notna().any()]
        fix = (f"the size is in column '{other[0]}': pass --x {other[0]}" if x in missing and other else
               f"rename yours with --column CANONICAL=SOURCE, e.g. --column {missing[0]}=your_name")
        absent = [c for c in missing if c not in frame.columns]
        what = (f"missing column(s) {absent}{loss_only} (found {list(raw.columns)})" if absent else
                f"column(s) {missing} hold no values in any of its {len(frame)} row(s)")
        raise ScaleplanError(f"{source}: {what}; {fix}")
    # An optional column the source left empty (e.g. D of a sweep without a tokens ladder) is absent.
    keep = [c for c in dict.fromkeys([*needed, *OPTIONAL_COLUMNS])
            if c in frame.columns and (c in needed or frame[c].notna().any())]
    _warn_lookalikes(source, list(raw.columns), columns, keep)
    frame = frame[keep].copy()
    # a tokens ladder over batch sizes fits one optimum per (size, D, B): one batch size's runs can all be lost
    batches = pd.to_numeric(frame.get("batch_size", pd.Series(dtype=float)), errors="coerce") * float(batch_unit_scale)
    keyed = [c for c in (x, *extra_sizes, "D", "batch_size", "model") if c in frame and (c != "batch_size" or batches.nunique() > 1)]
    swept = _cell_keys(_planned_d(frame.assign(batch_size=batches) if "batch_size" in keyed else frame), keyed)
    dropped: dict[str, int] = {}
    if "state" in frame:
        ok = frame["state"].astype(str).str.upper() == "COMPLETE"
        dropped["not COMPLETE"] = int((~ok).sum())
        if not ok.any():
            found = ", ".join(repr(v) for v in frame["state"].astype(str).unique()[:5])
            raise ScaleplanError(f"{source}: no trial's state is COMPLETE (an Optuna state; found {found}): map yours "
                                 "to COMPLETE, or drop the state column if every row finished")
        frame = frame[ok]
    where = _column_namer(source, columns)
    diverged = frame.iloc[:0]
    if "diverged" in frame:
        bad = pd.Series([_diverged(v, row, where) for row, v in frame["diverged"].items()], index=frame.index, dtype=bool)
        dropped["diverged"] = int(bad.sum())
        diverged = frame[bad]
        frame = frame[~bad]
    for col in [c for c in NUMERIC_COLUMNS if c in frame]:
        frame[col] = _numbers(frame[col], where)
    numeric = [c for c in dict.fromkeys((x, *extra_sizes, "D", "C", "lr", "loss", "batch_size")) if c in frame]
    if "batch_size" in frame:
        frame["batch_size"] = frame["batch_size"] * float(batch_unit_scale)
    finite = np.isfinite(frame[numeric]).all(axis=1) & (frame[[c for c in numeric if c != "loss"]] > 0).all(axis=1)
    _refuse_stand_in_losses(frame.loc[finite, "loss"] if "loss" in frame else None, where)
    dropped["non-finite or non-positive"] = int((~finite).sum())
    frame = frame[finite].reset_index(drop=True)
    for col in [c for c in numeric if c not in ("loss", "C")]:
        frame[col] = _merged(frame[col])
    if frame.empty:
        reasons = ", ".join(f"{n} {why}" for why, n in dropped.items() if n) or "no rows"
        raise ScaleplanError(f"{source}: no usable trials left ({reasons}); nothing to fit")
    if "model" in frame:
        frame["model"] = frame["model"].astype(str)
    columns_of_cells = [c for c in keyed if c in frame]
    lost = sorted(set(swept) - set(_cell_keys(frame, columns_of_cells)))
    trials = Trials(frame=frame, x=x, dropped={k: v for k, v in dropped.items() if v}, extra_sizes=tuple(extra_sizes),
                    lost=tuple(cell_label(columns_of_cells, key) for key in lost),
                    diverged=_keyed(diverged, [*columns_of_cells, "lr"], batch_unit_scale) if "diverged" in frame else None)
    if trials.has_lr:
        _refuse_merged_models(trials, source)
    return trials


def cell_label(columns: list[str], key: tuple[Any, ...]) -> str:
    """`N=6.4e+07, D=1e+09, model=a`: a cell keyed by `columns`, for messages."""
    return ", ".join(f"{c}={v}" if c == "model" else f"{c}={v:.4g}" for c, v in zip(columns, key))


def _keyed(rows: pd.DataFrame, columns: list[str], batch_unit_scale: float) -> pd.DataFrame:
    """`rows`' cell columns and lr, read as the kept trials' are (numbers, the batch size scaled, the model as text)."""
    out = pd.DataFrame({c: rows[c].astype(str) if c == "model" else pd.to_numeric(rows[c], errors="coerce")
                        for c in columns if c in rows}, index=rows.index)
    if "batch_size" in out:
        out["batch_size"] = out["batch_size"] * float(batch_unit_scale)
    return out.reset_index(drop=True)


def _planned_d(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with each stopped run's D set to its grid point's, steps x batch x the tokens per example of the full runs:
    sweeps before 2026-11-28 recorded a diverged or pruned run's D as the tokens it trained, which keyed no cell."""
    if not {"D", "steps", "steps_run", "batch_size"} <= set(frame.columns):
        return frame
    d, steps, run, batch = (pd.to_numeric(frame[c], errors="coerce") for c in ("D", "steps", "steps_run", "batch_size"))
    units = (d / (steps * batch))[run >= steps].median()
    if not np.isfinite(units):
        return frame
    return frame.assign(D=d.where(~(run < steps), steps * batch * units))


def _cell_keys(frame: pd.DataFrame, columns: list[str]) -> list[tuple[Any, ...]]:
    """The distinct cells of `frame` keyed by `columns`, read as prepare_trials reads them (numbers, the model as text);
    a row whose key is not a positive number keys no cell."""
    keys = pd.DataFrame({c: frame[c].astype(str) if c == "model" else pd.to_numeric(frame[c], errors="coerce")
                         for c in columns})
    numeric = [c for c in columns if c != "model"]
    usable = (np.isfinite(keys[numeric]) & (keys[numeric] > 0)).all(axis=1)
    return list(keys[usable].drop_duplicates().itertuples(index=False, name=None))


def _refuse_merged_models(trials: Trials, source: str) -> None:
    """A cell with two runs of one configuration (lr, batch size, weight decay, seed) mixes models: refuse, naming the fix."""
    frame = trials.frame
    config = [c for c in ("lr", "batch_size", "weight_decay", "wd_tau", "seed") if c in frame]
    repeated = frame[frame.duplicated([*trials.cell_columns, *config], keep=False)]
    if repeated.empty:
        return
    row = repeated.iloc[0]
    where = ", ".join(f"{c}={row[c]:.4g}" for c in trials.cell_columns if c != "model")
    what = ", ".join(f"{c}={row[c]:.4g}" for c in config)
    count = int((repeated[[*trials.cell_columns, *config]] == row[[*trials.cell_columns, *config]]).all(axis=1).sum())
    seeds = "" if "seed" in frame else "; repeated seeds? name the seed column with --column seed=COLUMN"
    raise FitError(
        f"{source}: cell {where} has {count} runs with the same {what}: different models with equal "
        f"({', '.join(c for c in trials.cell_columns if c != 'model')})? key cells by model with --column model=COLUMN{seeds}"
    )


def _column_namer(source: str, columns: Mapping[str, str]) -> Callable[[str, Any], str]:
    """(canonical column, row) -> `runs.csv: column 'w' (width), row 3 after the header`: the data's own column name."""
    own = {canonical: name for name, canonical in columns.items()}

    def where(column: str, row: Any) -> str:
        name = f"'{own[column]}' ({column})" if column in own else f"'{column}'"
        at = f"row {row + 1} after the header" if isinstance(row, (int, np.integer)) else f"row {row}"
        return f"{source}: column {name}, {at}"

    return where


def _empty(value: Any) -> bool:
    """True for a cell with nothing in it: None, NA, NaN or blank text."""
    return (value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and math.isnan(value))
            or (isinstance(value, str) and not value.strip()))


def _diverged(value: Any, row: Any, where: Callable[[str, Any], str]) -> bool:
    """One `diverged` cell as a boolean (prepare_trials says what it accepts); anything else is a one-line FitError."""
    if _empty(value):
        return False
    if isinstance(value, (bool, np.bool_, int, float, np.number)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text not in _TRUE | _FALSE:
        raise FitError(f"{where('diverged', row)}: {value!r} is neither true nor false; write true/false, yes/no or 1/0 "
                       "(empty = not diverged)")
    return text in _TRUE


def _warn_lookalikes(source: str, raw: list[Any], columns: Mapping[str, str], kept: list[str]) -> None:
    """Name the columns that look like the lr or the loss and were not read, where no --column chose between them: an
    export's `lr` (the decayed, final one) beside `learning_rate` (the peak), or `loss` (train) beside `val_loss`, was
    read silently (a probe: a law 10x too low). A sweep export's `train_loss` beside its held-out `loss` is expected."""
    own = {canonical: name for name, canonical in columns.items()}
    for target, pattern in (("lr", LR_LIKE), ("loss", LOSS_LIKE)):
        if target in own or target not in kept:
            continue
        alike = [str(c) for c in raw if c != target and c not in columns and c != "train_loss" and pattern.search(str(c))]
        if alike:
            warnings.warn(f"{source}: the {target} is read from column '{target}'; {', '.join(repr(c) for c in alike)} "
                          f"look{'s' if len(alike) == 1 else ''} alike and {'is' if len(alike) == 1 else 'are'} not read: if "
                          f"one is the {target} meant, --column {target}={alike[0]}", UserWarning, stacklevel=3)


def _merged(column: pd.Series) -> pd.Series:
    """Each value within KEY_RTOL above a smaller one takes that one's value (positive values): float noise in an
    export (0.0010000000001, N x (1 + 1e-12)) would split one lr or size into two, each with fewer seeds, and a size
    into two cells that narrow the law's interval unseen."""
    anchors: dict[float, float] = {}
    anchor = math.nan
    for value in np.sort(column.unique()):
        if not value <= anchor * (1 + KEY_RTOL):
            anchor = value
        anchors[value] = anchor
    return column.map(anchors)


def _refuse_stand_in_losses(loss: pd.Series | None, where: Callable[[str, Any], str]) -> None:
    """Refuse a loss of 0 or below beside positive losses: an export's stand-in for a diverged run (0, -1), which the
    optimum would take for the best run (a probe: a law 3.8x too high, flagged only as a flat end). An objective below
    zero everywhere (a negated score) is kept."""
    if loss is None or not (loss > 0).any() or (loss > 0).all():
        return
    row = loss.index[loss <= 0][0]
    raise FitError(f"{where('loss', row)}: {loss[row]:g} beside positive losses ({int((loss <= 0).sum())} row(s) at 0 or "
                   "below): a diverged run's stand-in? mark diverged runs with an empty, nan or inf loss (or a "
                   "'diverged' column)")


def _numbers(column: pd.Series, where: Callable[[str, Any], str]) -> pd.Series:
    """A numeric column as numbers (empty cells NaN); a value that is not a number is a one-line FitError."""
    if pd.api.types.is_numeric_dtype(column):
        return column
    return pd.Series([_number(v, str(column.name), row, where) for row, v in column.items()], index=column.index, dtype=float)


def _number(value: Any, column: str, row: Any, where: Callable[[str, Any], str]) -> float:
    """One numeric cell as a float: empty is NaN (the row is dropped), other text a one-line FitError."""
    if _empty(value):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise FitError(f"{where(column, row)}: {value!r} is not a number; correct it or delete the row") from None
