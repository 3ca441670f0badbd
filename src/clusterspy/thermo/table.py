"""``thermo_from_table``: from labelled frames at several temperatures to energies, and its report."""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.errors import ConfigError, InputFileError
from clusterspy.isomers import CLASSES, UNKNOWN, parse_isomer
from clusterspy.thermo.synthetic import K_B_EV

__all__ = [
    "format_thermo",
    "read_label_table",
    "thermo_from_table",
    "thermo_json",
    "write_thermo_json",
]

log = logging.getLogger(__name__)

_MISSING = {UNKNOWN, "lost", "blurred", ""}
#: A temperature with fewer labelled frames is left out of the fits (default of ``min_labelled_frames``).
MIN_LABELLED_FRAMES = 5
#: Least (expected) transitions behind a temperature's rate for it to enter an Arrhenius fit. Below
#: one, no transition was seen there: the rate the fit returns is the prior's, at most an upper bound,
#: and a fit through it made a barrier from nothing (a newcomer's, stop 38: "E_a = 2.02 eV" from a
#: 573 K rate resting on 1.3·10⁻⁵ transitions and one 773 K transition).
MIN_FITTED_TRANSITIONS = 1.0
_FIT_NAMES = {"van_t_hoff": "van 't Hoff", "arrhenius": "Arrhenius"}


def _code(label: str) -> int:
    lab = str(label).strip().lower()
    if lab in _MISSING:
        return -1
    try:
        return CLASSES.index(parse_isomer(lab).value)
    except ValueError:
        return -1


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc.strerror}; check the path") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputFileError(f"{path} is not a readable CSV text file ({exc}); give a CSV with "
                             "temperature_K and label columns or a series output folder") from None
    if not rows:
        raise InputFileError(f"{path} holds no rows")
    return {k: np.array([r[k] for r in rows], dtype=object) for k in rows[0]}


def _check_temperature(value: Any, where: str, error: type[Exception] = ConfigError) -> float:
    """``value`` as a temperature [K]: a finite number above 0 K, or a one-line user error."""
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise error(f"{where}: temperature {value!r} is not a number; give it in K") from None
    if not np.isfinite(t) or t <= 0:
        raise error(f"{where}: temperature {value!r} K is not a positive finite number of "
                    "kelvins") from None
    return t


def _temperature_column(values: Any, where: str, error: type[Exception]) -> np.ndarray:
    """A ``temperature_K`` column as floats [K]; names the first bad row (1 = first data row)."""
    try:
        out = np.asarray(values, dtype=float).ravel()
        if np.all(np.isfinite(out) & (out > 0)):
            return out
    except (TypeError, ValueError):
        pass
    vals = np.asarray(values, dtype=object).ravel()
    out = np.empty(len(vals))
    for n, v in enumerate(vals):
        out[n] = _check_temperature(v, f"{where}, row {n + 1} of temperature_K", error)
    return out


def _int_column(values: Any, name: str, where: str, error: type[Exception]) -> np.ndarray:
    """Frame numbers (empty or −1 = none), or a one-line user error naming the first bad row."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        if np.all(arr >= -1):
            return arr.astype(int).ravel()
    out = []
    for n, x in enumerate(values):
        if str(x).strip() in ("", "None"):
            out.append(-1)
            continue
        try:
            f = float(x)
        except (TypeError, ValueError):
            f = np.nan
        if not np.isfinite(f) or f != int(f) or f < -1:
            raise error(f"{where}, row {n + 1}: {name} {x!r} is not a frame number (0, 1, 2, ...)")
        out.append(int(f))
    return np.array(out, int)


def _float_column(values: Any, name: str, where: str, error: type[Exception]) -> np.ndarray:
    """Numbers (empty = NaN), or a one-line user error naming the first bad row."""
    arr = np.asarray(values)
    if arr.dtype.kind in "fiu":
        return arr.astype(float).ravel()
    out = []
    for n, x in enumerate(values):
        if str(x).strip().lower() in ("", "nan", "none"):
            out.append(np.nan)
            continue
        try:
            out.append(float(x))
        except (TypeError, ValueError):
            raise error(f"{where}, row {n + 1}: {name} {x!r} is not a number") from None
    return np.array(out, float)


def _read_summary(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        summ = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputFileError(f"cannot read {path} ({exc}); rerun clusterspy series on this "
                             "folder") from None
    if not isinstance(summ, dict):
        raise InputFileError(f"{path} is not a series summary; rerun clusterspy series")
    return summ


def read_label_table(
    source: Any,
    *,
    temperatures_K: Mapping[str, float] | Sequence[float] | None = None,
    label_column: str = "label",
) -> dict[str, np.ndarray]:
    """Read labelled frames with temperatures into columns.

    Parameters
    ----------
    source : path, mapping of columns, or sequence of series output folders
        A CSV with columns ``temperature_K``, ``label`` and optionally ``series``, ``frame``,
        ``time_s``, ``cluster``; a dict of such columns (e.g. from
        :func:`clusterspy.thermo.synthetic_labels`); or folders written by
        :func:`clusterspy.series.classify_series` (their ``frames.csv``; the temperature from
        ``summary.json``'s ``temperature_K`` or from ``temperatures_K``).
    temperatures_K : mapping or sequence, optional
        Temperatures [K] of the series folders: ``{folder: T}`` or one per folder in order.
    label_column : str
        Column holding the labels (``label`` = raw per-frame labels; ``smoothed_label`` is also
        present in series folders).

    Returns
    -------
    dict of str to numpy.ndarray
        ``temperature_K`` (float), ``code`` (class index, −1 = unknown/lost/blurred), ``label``,
        ``series`` (str), ``frame`` (int, −1 if absent), ``time_s`` (float, NaN if absent),
        ``frame_time_s`` (float per row, NaN if unknown).
    """
    if isinstance(source, Mapping):
        tables = [({k: np.asarray(v) for k, v in source.items()}, None, None, "table",
                   "the table", ConfigError)]
    else:
        paths = [source] if isinstance(source, str | os.PathLike) else list(source)
        if not paths:
            raise ConfigError("no input: give a CSV with temperature_K and label columns, or "
                              "series output folders")
        if temperatures_K is not None and not isinstance(temperatures_K, Mapping):
            temperatures_K = list(temperatures_K)
            if len(temperatures_K) != len(paths):
                raise ConfigError(f"{len(temperatures_K)} temperatures for {len(paths)} inputs; "
                                  "give one temperature (K) per input")
        tables = []
        used: set[str] = set()
        for n, p in enumerate(paths):
            p = Path(p)
            if p.is_dir():
                fcsv = p / "frames.csv"
                if not fcsv.exists():
                    raise InputFileError(f"{p} is not a series output folder (no frames.csv); "
                                         "give folders written by clusterspy series --out")
                summ = _read_summary(p / "summary.json")
                t = summ.get("temperature_K")
                where = f"{p / 'summary.json'}"
                if isinstance(temperatures_K, Mapping):
                    t = temperatures_K.get(str(p), temperatures_K.get(p.name, t))
                    where = f"temperature of {p}"
                elif temperatures_K is not None:
                    t = temperatures_K[n]
                    where = f"temperature of {p}"
                if t is None:
                    raise ConfigError(
                        f"no temperature for {p}: its summary.json records none; rerun "
                        "clusterspy series with --temperature-K T (the specimen temperature in "
                        "K) and the same --out, or in Python pass temperatures_K=... to "
                        "thermo_from_table")
                t = _check_temperature(t, where, InputFileError if where.endswith(".json")
                                       else ConfigError)
                dt = summ.get("frame_time_s")
                try:
                    dt = float(dt) if dt is not None else None
                except (TypeError, ValueError):
                    dt = None
                if dt is not None and not (np.isfinite(dt) and dt > 0):
                    dt = None
                name, csv_path = p.name or str(p), fcsv
            else:
                if not p.exists():
                    raise InputFileError(f"{p} does not exist; check the path")
                t, dt, name, csv_path = None, None, p.stem, p
            if name in used:  # two inputs of the same name: keep their series apart
                name = f"{name}[{n}]"
            used.add(name)
            tables.append((_read_csv(csv_path), t, dt, name, str(csv_path), InputFileError))
    cols: dict[str, list] = {k: [] for k in ("temperature_K", "code", "label", "series", "frame",
                                             "time_s", "frame_time_s")}
    for tab, t_fixed, dt, name, where, error in tables:
        if label_column not in tab:
            raise ConfigError(f"{where} has no column {label_column!r} (columns: "
                              f"{', '.join(tab)})")
        n = len(tab[label_column])
        if t_fixed is None:
            if "temperature_K" not in tab:
                raise ConfigError(f"{where} needs a temperature_K column (K)")
            temp = _temperature_column(tab["temperature_K"], where, error)
        else:
            temp = np.full(n, t_fixed)
        ser = np.array([f"{name}:{s}" for s in tab["series"]], object) if "series" in tab else \
            np.full(n, name, dtype=object)
        if "cluster" in tab:
            ser = np.array([f"{s}#{c}" for s, c in zip(ser, tab["cluster"], strict=True)], object)
        frame = _int_column(tab["frame"], "frame", where, error) if "frame" in tab else \
            np.full(n, -1)
        ts = _float_column(tab["time_s"], "time_s", where, error) if "time_s" in tab else \
            np.full(n, np.nan)
        labels = [str(x) for x in tab[label_column]]
        cols["temperature_K"].extend(temp.tolist())
        cols["code"].extend(_code(x) for x in labels)
        cols["label"].extend(labels)
        cols["series"].extend(ser.tolist())
        cols["frame"].extend(frame.tolist())
        cols["time_s"].extend(ts.tolist())
        cols["frame_time_s"].extend([float(dt) if dt else np.nan] * n)
    return {
        "temperature_K": np.array(cols["temperature_K"], float),
        "code": np.array(cols["code"], int),
        "label": np.array(cols["label"], object),
        "series": np.array(cols["series"], object),
        "frame": np.array(cols["frame"], int),
        "time_s": np.array(cols["time_s"], float),
        "frame_time_s": np.array(cols["frame_time_s"], float),
    }


def _series_at(tab: dict[str, np.ndarray], m: np.ndarray) -> list[tuple[str, np.ndarray, float]]:
    """Per series at one temperature: (name, codes on a full frame grid, frame time or NaN)."""
    out = []
    for name in dict.fromkeys(tab["series"][m]):
        mm = m & (tab["series"] == name)
        fr = tab["frame"][mm]
        codes = tab["code"][mm]
        dt = np.nan
        if np.all(fr >= 0) and len(fr):
            order = np.argsort(fr, kind="stable")
            fr, codes = fr[order], codes[order]
            grid = np.full(int(fr.max() - fr.min() + 1), -1)
            grid[fr - fr.min()] = codes
            ts = tab["time_s"][mm][order]
            fts = tab["frame_time_s"][mm]
            if np.isfinite(fts).any():
                dt = float(np.nanmedian(fts))
            elif np.isfinite(ts).sum() > 1:
                ok = np.isfinite(ts)
                dfr = np.diff(fr[ok])
                good = dfr > 0
                if good.any():
                    dt = float(np.median(np.diff(ts[ok])[good] / dfr[good]))
            codes = grid
        out.append((str(name), codes, dt))
    return out


def _observed_transitions(series: list[tuple[str, np.ndarray, float]], k: int) -> np.ndarray:
    """``(K, K)`` label transitions between consecutive labelled frames, summed over series."""
    from clusterspy.series.stats import transition_counts

    total = np.zeros((k, k))
    for _, codes, _ in series:
        total += transition_counts(codes, k)
    return total


def _n_eff(series: list[tuple[str, np.ndarray, float]], ordered: bool) -> float:
    """Effective independent frames of the series at one temperature: the sum of each series'
    :func:`~clusterspy.series.stats.effective_sample_size` when time-ordered, else the number of
    labelled frames (independent draws)."""
    from clusterspy.series.stats import effective_sample_size

    if not ordered:
        return float(sum(np.sum(np.asarray(s[1]) >= 0) for s in series))
    return float(sum(effective_sample_size(s[1], len(CLASSES))["n_eff"] for s in series))


def _proportions_entry(tab: dict[str, np.ndarray], m: np.ndarray, t: float, c: np.ndarray,
                       n_eff: float, n_series: int) -> dict:
    """The ``proportions`` entry of one temperature ``t`` [K]: counts ``c`` of the rows ``m`` and
    the 95 % Jeffreys interval of each share on ``n_eff`` effective independent frames, as in a
    series summary (never zero-width for few frames)."""
    from clusterspy.series.stats import jeffreys_interval

    n_unknown = int(np.sum(np.char.lower(tab["label"][m].astype(str)) == UNKNOWN))
    n_excl = int(np.sum(tab["code"][m] < 0))
    tot = max(c.sum(), 1e-300)
    ci = jeffreys_interval(c / tot, n_eff) if n_eff > 0 else np.full((len(c), 2), np.nan)
    if n_excl:
        log.info("T = %g K: %d unlabelled frames excluded (%d unknown)", t, n_excl, n_unknown)
    return {
        "temperature_K": t,
        "n_frames": int(m.sum()),
        "n_labelled": int(m.sum()) - n_excl,
        "n_unknown": n_unknown,
        "n_excluded": n_excl,
        "n_series": n_series,
        "n_eff": n_eff,
        "interval_method": "jeffreys_neff",
        "counts": {cl: float(c[i]) for i, cl in enumerate(CLASSES)},
        "proportions": {cl: {"value": float(c[i] / tot),
                             "ci95": [float(ci[i, 0]), float(ci[i, 1])]}
                        for i, cl in enumerate(CLASSES)},
    }


def _kinetics(
    temps: np.ndarray, per_t_series: list[list[tuple[str, np.ndarray, float]]],
    frame_time_s: float | None, misclassification: float | None, min_transitions: int,
    n_boot: int, rng: np.random.Generator, warn: Callable[[str], None],
) -> tuple[list[dict], list[dict], np.ndarray, np.ndarray]:
    """Rates per temperature (error-aware CTMC fit) and their Arrhenius fits.

    Returns
    -------
    rates, arrhenius : list of dict
        The ``rates`` and ``arrhenius`` entries of :func:`thermo_from_table`.
    expected_transitions : numpy.ndarray
        ``(n_T, K, K)`` expected transitions of each temperature's fit.
    fitted : numpy.ndarray
        ``(n_T,)`` bool: a frame time was known and the rates were fitted.
    """
    from clusterspy.thermo.kinetics import arrhenius_fit, fit_rates

    k = len(CLASSES)
    rates: list[dict] = []
    arrh: list[dict] = []
    q_t = np.zeros((len(temps), k, k))
    n_t = np.zeros((len(temps), k, k))
    fitted = np.zeros(len(temps), bool)
    for n, (t, series) in enumerate(zip(temps, per_t_series, strict=True)):
        dts = [s[2] if np.isfinite(s[2]) else frame_time_s for s in series]
        dts = [d for d in dts if d]
        if not dts:
            continue
        dt = float(np.median(dts))
        eps = misclassification if misclassification is not None else "estimate"
        fr = fit_rates([s[1] for s in series], dt, misclassification=eps)
        q_t[n], n_t[n] = fr["Q"], fr["expected_transitions"]
        fitted[n] = True
        for name, lab, _ in series:
            ch = np.sum((lab[:-1] >= 0) & (lab[1:] >= 0) & (lab[:-1] != lab[1:]))
            if ch < min_transitions:
                warn(f"T = {t:g} K, series {name}: only {int(ch)} label changes; too few "
                     "transitions for a meaningful rate")
        for i, a in enumerate(CLASSES):
            for j, b in enumerate(CLASSES):
                if i == j or q_t[n, i, j] <= 0:
                    continue
                nij = float(n_t[n, i, j])
                z = 1.959963984540054 / np.sqrt(max(nij, 1e-12))
                rates.append({
                    "temperature_K": float(t), "from": a, "to": b,
                    "rate_per_s": float(q_t[n, i, j]),
                    "ci95_per_s": [float(q_t[n, i, j] * np.exp(-z)),
                                   float(q_t[n, i, j] * np.exp(z))],
                    "expected_transitions": nij, "frame_time_s": dt,
                    "misclassification": fr["misclassification"],
                })
                if nij < min_transitions:
                    warn(f"T = {t:g} K: {a} → {b} rests on {nij:.1f} transitions "
                         f"(< {min_transitions}); its rate is uncertain")
    for i, a in enumerate(CLASSES):
        for j, b in enumerate(CLASSES):
            if i == j:
                continue
            ok = q_t[:, i, j] > 0
            if ok.sum() == 0:
                continue
            unseen = ok & (n_t[:, i, j] < MIN_FITTED_TRANSITIONS)
            for t in temps[unseen]:
                warn(f"T = {t:g} K: {a} → {b} rests on less than {MIN_FITTED_TRANSITIONS:g} (expected) "
                     "transition — none was seen, its rate is at most an upper bound: left out of the "
                     "Arrhenius fit")
            ok &= ~unseen
            if ok.sum() < 2:
                warn(f"{a} → {b}: a rate at fewer than 2 temperatures; no Arrhenius fit")
                continue
            fit = arrhenius_fit(temps[ok], q_t[ok, i, j], n_t[ok, i, j], n_boot=n_boot,
                                rng=rng)
            arrh.append({"from": a, "to": b, **fit})
    return rates, arrh, n_t, fitted


def _equilibrium(temps: np.ndarray, counts: np.ndarray, boot: np.ndarray, ref: int, selected: list[int],
                 fit_t: np.ndarray, n_eff_t: list[float], warn: Callable[[str], None]
                 ) -> tuple[list[dict], list[dict]]:
    """ΔG at each usable temperature and the van 't Hoff fit of each selected isomer against ``ref``."""
    from clusterspy.thermo.equilibrium import delta_g, van_t_hoff_fit

    vth, dgs = [], []
    for i in selected:
        cl = CLASSES[i]
        for n, t in enumerate(temps):
            if not fit_t[n]:
                continue
            g, (glo, ghi) = delta_g(t, counts[n], boot[n], i, ref, n_eff=n_eff_t[n])
            dgs.append({"temperature_K": float(t), "isomer": cl, "reference": CLASSES[ref],
                        "delta_G_eV": g, "ci95_eV": [glo, ghi]})
        usable = (counts[:, i] > 0) & (counts[:, ref] > 0)
        if usable.sum() < 2:
            warn(f"{cl}: seen together with {CLASSES[ref]} at fewer than 2 temperatures; "
                 "no van 't Hoff fit")
            continue
        if np.any(counts[:, i] < 5):
            warn(f"{cl}: fewer than 5 frames at some temperature; its ΔE is poorly constrained")
        fit = van_t_hoff_fit(temps[usable], counts[usable], boot[usable], i, ref)
        vth.append({"isomer": cl, "reference": CLASSES[ref], **fit})
    return vth, dgs


def thermo_from_table(
    source: Any,
    *,
    reference: str | None = None,
    isomers: Sequence[str] | None = None,
    temperatures_K: Mapping[str, float] | Sequence[float] | None = None,
    frame_time_s: float | None = None,
    label_column: str = "label",
    misclassification: float | None = None,
    kinetics: bool | None = None,
    min_transitions: int = 20,
    min_labelled_frames: int = MIN_LABELLED_FRAMES,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """Free-energy differences, van 't Hoff and Arrhenius fits from labelled frames.

    Behind ``clusterspy thermo TABLE [--format json] [--out DIR]``: print the returned dict as
    JSON, and pass it to :func:`clusterspy.write_thermo_report` for ``--out``.

    Parameters
    ----------
    source : path, mapping, or sequence of series output folders
        See :func:`read_label_table`.
    reference : str, optional
        Reference isomer of ΔE, ΔS, ΔG (default: the most frequent).
    isomers : sequence of str, optional
        Isomers to fit against the reference (default: every isomer seen at least once; an
        isomer seen only through misclassification gives a meaningless fit — name the real ones).
    temperatures_K : mapping or sequence, optional
        Temperatures [K] of series folders that do not record one.
    frame_time_s : float, optional
        Frame interval [s] for the kinetics when the table has no ``time_s`` and the folders no
        frame time.
    label_column : str
        Label column to use.
    misclassification : float, optional
        Known label error rate ε (e.g. from the model card's test confusion matrix): the
        proportions are corrected for it (:func:`~clusterspy.thermo.equilibrium.correct_misclassification`)
        and the kinetics use it; by default proportions are taken as they are and the kinetics
        estimate ε.
    kinetics : bool, optional
        Fit rates (needs time-ordered frames and a frame time); default: whenever possible.
    min_transitions : int
        Below this many (expected) transitions a rate is flagged with a warning.
    min_labelled_frames : int
        A temperature with fewer labelled frames is left out of the van 't Hoff, Arrhenius and
        branching fits, with a warning naming it (its proportions are still listed).
    n_boot : int
        Bootstrap replicates.
    seed : int
        Seed of every random draw (recorded).

    Returns
    -------
    dict
        JSON-ready (``van_t_hoff`` / ``arrhenius`` None, with the reason in ``not_fitted``, when
        fewer than 2 temperatures are usable): ``{"van_t_hoff": [{"isomer", "reference",
        "delta_E_eV", "ci95_eV", "delta_S_kB", "ci95_S_kB", ...}], "arrhenius": [{"from", "to",
        "barrier_eV", "ci95_eV", "prefactor_per_s", "ci95_prefactor_per_s", ...}],
        "proportions": [per temperature],
        "delta_G": [...], "rates": [...], "branching": [{"temperature_K", "from", "to",
        "ratio", "ci95", "n_departures", "source"}: where an isomer goes when it leaves, from the
        rate fit's expected transitions when kinetics ran, else from the observed label changes],
        "warnings": [...], "settings": {...}}``.
    """
    from clusterspy.thermo.equilibrium import bootstrap_counts, correct_misclassification
    from clusterspy.thermo.kinetics import branching_by_temperature

    def isomer(name: Any, what: str) -> str:
        try:
            return parse_isomer(str(name)).value
        except ValueError:
            raise ConfigError(f"{what} {name!r} is not an isomer; choose one of "
                              f"{', '.join(CLASSES)}") from None

    ref_name = None if reference is None else isomer(reference, "the reference")
    wanted = None if isomers is None else {isomer(x, "isomer") for x in isomers}
    rng = np.random.default_rng(seed)
    tab = read_label_table(source, temperatures_K=temperatures_K, label_column=label_column)
    temps = np.unique(tab["temperature_K"])
    warnings: list[str] = []

    def warn(msg: str) -> None:  # returned in "warnings" (printed once by the CLI), logged at INFO
        warnings.append(msg)
        log.info(msg)

    for msg in _series_label_warnings(source):  # a series' proportions flagged there stay flagged here
        warn(msg)

    k = len(CLASSES)
    counts = np.zeros((len(temps), k))
    boot = np.zeros((len(temps), n_boot, k))
    per_t_series = []
    ordered_t: list[bool] = []
    n_eff_t: list[float] = []
    proportions = []
    for n, t in enumerate(temps):
        m = tab["temperature_K"] == t
        series = _series_at(tab, m)
        per_t_series.append(series)
        ordered = all(np.all(tab["frame"][m & (tab["series"] == s)] >= 0) for s, _, _ in series)
        ordered_t.append(ordered)
        c, b = bootstrap_counts([s[1] for s in series], ordered=ordered, n_boot=n_boot, rng=rng)
        if misclassification:
            c, b = correct_misclassification(c, misclassification), correct_misclassification(
                b, misclassification)
        counts[n], boot[n] = c, b
        n_eff_t.append(_n_eff(series, ordered))
        proportions.append(_proportions_entry(tab, m, float(t), c, n_eff_t[-1], len(series)))
    n_lab = np.array([p["n_labelled"] for p in proportions])
    fit_t = n_lab >= min_labelled_frames  # temperatures the fits use
    for t, n_l in zip(temps[~fit_t], n_lab[~fit_t], strict=True):
        warn(f"T = {t:g} K: {n_l} labelled frame(s) (< {min_labelled_frames}); left out of the "
             "van 't Hoff, Arrhenius and branching fits")
    counts_all = counts
    counts, boot = np.where(fit_t[:, None], counts, 0.0), np.where(fit_t[:, None, None], boot, 0.0)
    total = counts_all.sum(axis=0)
    seen = [cl for i, cl in enumerate(CLASSES) if total[i] > 0]
    if not seen:
        raise InputFileError("no frame carries an isomer label (all unknown, lost or blurred); "
                             "nothing to fit")
    ref = int(np.argmax(total)) if ref_name is None else CLASSES.index(ref_name)
    if total[ref] == 0:
        raise ConfigError(f"the reference isomer {CLASSES[ref]} never occurs in the labels; "
                          f"choose one of {', '.join(seen)}")
    selected = [i for i, cl in enumerate(CLASSES)
                if i != ref and total[i] > 0 and (wanted is None or cl in wanted)]
    vth, dgs = _equilibrium(temps, counts, boot, ref, selected, fit_t, n_eff_t, warn)

    rates: list[dict] = []
    arrh: list[dict] = []
    br_counts = np.array([_observed_transitions(series, k) if ordered else np.zeros((k, k))
                          for series, ordered in zip(per_t_series, ordered_t, strict=True)])
    br_source = ["observed label changes"] * len(temps)
    can_kinetics = any(
        len(s[1]) > 1 and (np.isfinite(s[2]) or frame_time_s) for ser in per_t_series for s in ser)
    if kinetics is None:
        kinetics = can_kinetics
    if kinetics and not can_kinetics:
        raise ConfigError("kinetics need time-ordered frames (frame column) and a frame time "
                          "(time_s column, series folder metadata or --frame-time)")
    if kinetics:
        use = np.where(fit_t)[0]
        rates, arrh, n_t, fitted = _kinetics(temps[use], [per_t_series[n] for n in use], frame_time_s,
                                             misclassification, min_transitions, n_boot, rng, warn)
        for n in np.where(fitted)[0]:
            br_counts[use[n]], br_source[use[n]] = n_t[n], "expected transitions (rate fit)"
    br_counts[~fit_t] = 0.0
    not_fitted = {}
    if fit_t.sum() < 2:
        why = (f"fewer than 2 temperatures with at least {min_labelled_frames} labelled frames "
               f"({int(fit_t.sum())} of {len(temps)})")
        vth, not_fitted["van_t_hoff"] = None, why
        if kinetics:
            arrh, not_fitted["arrhenius"] = None, why
        warn(f"no van 't Hoff{' or Arrhenius' if kinetics else ''} fit: {why}")
    elif not selected:  # one isomer only: no ratio to fit (a newcomer's table printed nothing about it)
        why = (f"only the reference isomer {CLASSES[ref]} was labelled"
               + ("" if wanted is None else " among the isomers asked for")
               + ": there is no population ratio to fit")
        vth, not_fitted["van_t_hoff"] = [], why
        warn(f"no van 't Hoff fit: {why}")
    return {
        "schema": "clusterspy.thermo/1",
        "reference": CLASSES[ref],
        "temperatures_K": temps.tolist(),
        "van_t_hoff": vth,
        "arrhenius": arrh,
        "not_fitted": not_fitted,
        "proportions": proportions,
        "delta_G": dgs,
        "rates": rates,
        "branching": branching_by_temperature(temps, br_counts, br_source),
        "warnings": warnings,
        "settings": {
            "reference": CLASSES[ref], "label_column": label_column,
            "isomers": None if isomers is None else sorted(wanted or []),
            "misclassification": misclassification, "kinetics": bool(kinetics),
            "min_transitions": min_transitions, "min_labelled_frames": min_labelled_frames,
            "n_boot": n_boot, "seed": seed,
            "frame_time_s": frame_time_s, "k_B_eV_per_K": K_B_EV,
        },
    }


def _finite(obj: Any) -> Any:
    """``obj`` with NaN/±inf floats replaced by None and NumPy values by Python ones."""
    if isinstance(obj, Mapping):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return _finite(obj.tolist())
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if np.isfinite(obj) else None
    return obj


def thermo_json(result: dict, indent: int | None = 2) -> str:
    """:func:`thermo_from_table`'s result as strict JSON: a NaN or infinite number is ``null``.

    Behind ``clusterspy thermo --format json`` and ``thermo.json``; every JSON reader can parse it.
    """
    return json.dumps(_finite(result), indent=indent, allow_nan=False, default=str)


def write_thermo_json(result: dict, out: str | os.PathLike) -> Path:
    """Write ``thermo.json`` (strict JSON, :func:`thermo_json`) into the folder ``out`` (created).

    The figures and ``report.html`` are drawn one layer up, by
    :func:`clusterspy.write_thermo_report` (what ``clusterspy thermo --out DIR`` runs).

    Parameters
    ----------
    result : dict
        Output of :func:`thermo_from_table`.
    out : str or os.PathLike
        Output folder (created).

    Returns
    -------
    pathlib.Path
        Path of ``thermo.json``.
    """
    from clusterspy.io import write_text_atomic

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(out_dir / "thermo.json", thermo_json(result) + "\n")


def _series_label_warnings(source: Any) -> list[str]:
    """The warnings in the ``summary.json`` of each series folder of ``source`` that concern a
    cluster's proportions (:data:`clusterspy.series.summary.PROPORTION_WARNING_MARKS`), prefixed
    with the folder; [] for a table."""
    from clusterspy.series.summary import PROPORTION_WARNING_MARKS

    if isinstance(source, Mapping):
        return []
    paths = [source] if isinstance(source, str | os.PathLike) else list(source)
    out = []
    for p in map(Path, paths):
        found = _read_summary(p / "summary.json").get("warnings") if p.is_dir() else None
        out += [f"{p}: {w}" for w in found or []
                if isinstance(w, str) and any(k in w for k in PROPORTION_WARNING_MARKS)]
    return out


def format_thermo(result: dict) -> str:
    """Plain-text summary of :func:`thermo_from_table`'s result (what ``clusterspy thermo`` prints)."""

    def ci(c: list) -> str:
        return "[?, ?]" if c[0] is None else f"[{c[0]:.4f}, {c[1]:.4f}]"

    lines = [f"reference isomer: {result['reference']}; temperatures (K): "
             + ", ".join(f"{t:g}" for t in result["temperatures_K"])]
    for p in result["proportions"]:
        props = ", ".join(f"{c} {v['value']:.3f}" for c, v in p["proportions"].items()
                          if p["counts"][c] > 0)
        lines.append(f"  T = {p['temperature_K']:g} K: {p['n_labelled']} labelled, "
                     f"{p['n_excluded']} excluded ({p['n_unknown']} unknown): {props or '—'}")
    for name, why in result.get("not_fitted", {}).items():
        lines.append(f"{_FIT_NAMES.get(name, name)}: not fitted ({why})")
    for v in result["van_t_hoff"] or []:
        lines.append(f"van 't Hoff {v['isomer']} vs {v['reference']}: ΔE = {v['delta_E_eV']:.4f} eV "
                     f"{ci(v['ci95_eV'])}, ΔS = {v['delta_S_kB']:.2f} k_B")
    for a in result["arrhenius"] or []:
        if a["barrier_eV"] is None:
            continue
        pre = a["prefactor_per_s"]
        lines.append(f"Arrhenius {a['from']} → {a['to']}: E_a = {a['barrier_eV']:.4f} eV "
                     f"{ci(a['ci95_eV'])}, A = "
                     + ("beyond the float range" if pre is None else f"{pre:.3g} /s"))
    for b in result.get("branching", []):
        if b["ratio"] is not None and b["ratio"] >= 0.005:  # 0.00 and null are not printed (in the JSON)
            lo, hi = b["ci95"]
            lines.append(f"branching at {b['temperature_K']:g} K: {b['from']} → {b['to']} "
                         f"{b['ratio']:.2f} [{lo:.2f}, {hi:.2f}] of {b['n_departures']:.1f} "
                         f"departures ({b['source']})")
    lines += [f"warning: {w}" for w in result["warnings"]]
    return "\n".join(lines)
