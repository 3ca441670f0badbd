"""``SeriesResult``: the per-frame table and summary of a series, and their plain-text description."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.isomers import CLASSES
from clusterspy.series.frames import FRAME_COLUMNS

__all__ = ["SeriesResult"]


@dataclass
class SeriesResult:
    """Result of :func:`~clusterspy.series.classify_series`.

    Attributes
    ----------
    frames : dict of str to numpy.ndarray
        The per-frame table, one array per column of
        :data:`~clusterspy.series.frames.FRAME_COLUMNS` (one row per frame and cluster; floats
        NaN where empty).
    summary : dict
        The content of ``summary.json``.
    out : pathlib.Path or None
        Output folder, if one was written.
    thumbnails : dict
        ``{isomer: [crop arrays]}`` — the most confident crops per isomer.
    thumbnail_frames : dict
        ``{isomer: [(frame, cluster)]}`` of each thumbnail, in the same order (None where a
        checkpoint from an older version did not keep them).
    """

    frames: dict[str, np.ndarray]
    summary: dict
    out: Path | None = None
    thumbnails: dict[str, list[np.ndarray]] = field(default_factory=dict)
    thumbnail_frames: dict[str, list[tuple[int | None, int | None]]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames["frame"])

    def rows(self) -> Iterator[dict[str, Any]]:
        """Iterate over the per-frame table as dicts."""
        for i in range(len(self)):
            yield {k: v[i] for k, v in self.frames.items()}

    @property
    def report_path(self) -> Path | None:
        """``out/report.html`` if it was written."""
        if self.out is None:
            return None
        p = self.out / "report.html"
        return p if p.exists() else None

    def describe(self, *, warnings: bool = True) -> str:
        """A short plain-text summary (what ``clusterspy series`` prints); ``warnings``: end with
        the run's warnings (``summary["warnings"]``, among them the frames that could not be
        used), one ``warning: …`` line each (the CLI prints them on stderr instead)."""
        s = self.summary
        frame_time = "unknown" if not s["frame_time_s"] else f"{s['frame_time_s']:g} s"
        lines = [f"{s['source']}: {s['n_frames']} frames, {s['n_clusters']} cluster(s), "
                 f"frame time {frame_time}, model {s['model']['id']}"
                 + (" (each cluster judged by the one that covers its size)" if "+" in s["model"]["id"]
                    else "")]
        if s.get("calibration"):  # clusterspy.workflows.classify_series(calibrate=True)
            lines.append(f"pixel size checked against the lattice: {s['calibration']['message']}")
        note = self.no_label_note()
        if note:
            lines.append(note)
        for cl in s["clusters"]:
            pr = cl["smoothed"]["proportions"]
            parts = []
            for c in CLASSES:
                v, (lo, hi) = pr[c]["value"], pr[c]["ci95"]
                if v is not None:
                    lo_s = "?" if lo is None else f"{lo:.2f}"
                    hi_s = "?" if hi is None else f"{hi:.2f}"
                    parts.append(f"{c} {v:.2f} [{lo_s}, {hi_s}]")
            why = ", ".join(f"{k} {v}" for k, v in cl.get("unknown_reasons", {}).items())
            lines.append(
                f"cluster {cl['cluster']}: frames {cl['first_frame']}–{cl['last_frame']}, "
                f"{cl['n_lost']} lost, {cl['n_blurred']} blurred, {cl['n_unknown']} unknown"
                f"{f' ({why})' if why and cl['n_unknown'] else ''}, "
                f"{cl['n_transitions_smoothed']} transitions (smoothed)")
            if parts:  # none when no frame of the cluster is labelled (the note above says why)
                lines.append("  proportions (smoothed, 95% CI): " + "; ".join(parts))
            if "n_inferred" in cl:
                lines.append(f"  {cl['n_inferred']} of {cl['n_smoothed_labels']} smoothed labels "
                             "were inferred by the HMM where the network gave unknown / another "
                             f"label ({cl['n_inferred_from_unknown']} unknown, "
                             f"{cl['n_inferred_from_other_label']} another label)")
        if s.get("interval_method"):
            lines.append(f"intervals: {s['interval_method']} (see interval_method_description in "
                         "summary.json)")
        fits = self.verify_sample_line()
        if fits is not None:
            lines.append(fits)
        if warnings:
            lines += [f"warning: {w}" for w in s["warnings"]]
        return "\n".join(lines)

    def verify_sample_line(self) -> str | None:
        """One line on the structure fits of sampled frames (``summary["verify_sample"]``, from
        ``verify_sample=K`` / ``--verify-sample K``), or None when none were asked for."""
        c = self.summary.get("verify_sample")
        if c is None:
            return None
        if not c["fitted"]:
            return (f"structure fit of sampled frames: none of the {c['asked']} asked for was fitted (no "
                    "labelled frame, or the frames cannot be read again)")
        return (f"structure fit of sampled frames: {c['fitted']} fitted (at most {c['asked']} asked for): "
                f"{c['agree']} agree with the smoothed label, {c['disagree']} disagree, "
                f"{c['inconclusive']} inconclusive (data | fitted model in report.html)")

    def no_label_note(self) -> str | None:
        """Why no frame is labelled, with advice (:func:`~clusterspy.series.no_label.no_label_note`),
        or None when some frame is."""
        from clusterspy.series.no_label import NO_CLUSTER_NOTE, no_label_note

        if len(self.frames.get("label", [])) == 0 and self.summary.get("n_frames"):
            return NO_CLUSTER_NOTE.format(n=self.summary["n_frames"])
        return no_label_note(self.frames, (self.summary.get("model") or {}).get("id"))

    def cluster(self, cluster_id: int = 0) -> dict[str, np.ndarray]:
        """The per-frame table of one cluster."""
        m = self.frames["cluster"] == cluster_id
        return {k: v[m] for k, v in self.frames.items()}

    def to_dataframe(self) -> Any:
        """The per-frame table as a ``pandas.DataFrame`` indexed by ``frame`` (one row per frame
        and cluster; ``time_s`` [s], ``x_px``/``y_px`` [px], ``diameter_nm`` [nm]).

        Raises
        ------
        MissingDependencyError
            pandas is not installed (``pip install 'clusterspy[tables]'``).
        """
        from clusterspy.errors import import_optional

        pd = import_optional("pandas", "tables", "a series as a DataFrame")
        cols = [c for c in FRAME_COLUMNS if c in self.frames]
        return pd.DataFrame({c: np.asarray(self.frames[c]) for c in cols}, columns=cols).set_index("frame")
