"""Command-line interface: ``clusterspy simulate | train | classify | series | thermo | fit | demo``.

The CLI only parses arguments and prints; every command calls a Python function of the
package. Heavy modules are imported inside the commands so that ``clusterspy --help`` starts
fast. A :class:`~clusterspy.errors.ClusterSpyError` (a user mistake) is printed as one line on
stderr with a non-zero exit code — never a traceback.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from clusterspy.simulation import Microscope

#: ``clusterspy simulate --source-size`` default [Å]: that of :func:`clusterspy.workflows.simulate_to_file`
#: (not imported here: the CLI starts without loading the workflows).
SOURCE_SIZE_A = 0.6
#: What ``--calibrate`` without ``--element`` says: the lattice it measures against is gold's.
AU_RULER_NOTE = ("--calibrate measures against Au's lattice (a = 4.08 Å) as no --element was given: name the "
                 "metal with --element — Pt's lattice is 4 % smaller, Cu's 12 %, Pb's 21 % larger")

app = typer.Typer(
    name="clusterspy",
    help="Structural isomers (icosahedral, decahedral, fcc, amorphous) of metal nanoclusters "
    "from HAADF-STEM images and image series.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class OutputFormat(StrEnum):
    """How ``classify`` and ``fit`` print their results."""

    table = "table"
    json = "json"
    csv = "csv"


class Contrast(StrEnum):
    """What the user says of the image's contrast."""

    auto = "auto"
    haadf = "haadf"


ContrastOption = Annotated[
    Contrast,
    typer.Option(help="'auto' refuses images that look like bright field; 'haadf': trust they are HAADF."),
]


class Border(StrEnum):
    """What to do with clusters touching the image edge."""

    flag = "flag"
    skip = "skip"


#: ``--model``'s help; the names are those of :func:`clusterspy.predict.shipped_models` (checked by a test).
MODEL_HELP = ("Default 'auto': each cluster judged by the shipped model that covers its size, isomernet-v2 "
              "(1.18–3.26 nm, images ≤ 0.5 Å/px), else isomernet-v5 from 4.35 nm (to 10.5 nm, ≤ 0.6 Å/px), "
              "else isomernet-v3 (0.94–8.05 nm as detected, ≤ 0.6 Å/px); the model column says which; a "
              "label of v2, v3 or v5 stands only where isomernet-v7 finds the same isomer most probable "
              "(else models_disagree). Or one shipped model alone by name (isomernet-v2, isomernet-v3, "
              "isomernet-v5: 2.54–10.5 nm, or isomernet-v4: 0.87–8.05 nm, fewer labels at the true pixel "
              "size and far fewer wrong ones at a wrong one, or isomernet-v7: v4 trained on astigmatic "
              "probes too — the README's 'When to trust a label'), or an "
              "ONNX model with its model card (a .onnx file or its folder).")

PixelSize = Annotated[
    float | None,
    typer.Option("--pixel-size", help="Pixel size, in Å/px; overrides the file's calibration."),
]
SignalOption = Annotated[
    str | None,
    typer.Option("--signal", help="Which signal of a multi-signal file (.emd with HAADF, DF, BF, EDS ...): "
                 "its index (0 first) or title; needed when no title names the detector (HAADF/ADF/DF/BF)."),
]

#: The microscope of a structure fit (``fit``, ``classify --verify``, ``series --verify-sample``).
EnergyOption = Annotated[float, typer.Option("--energy", help="Beam energy, in keV.")]
SemiangleOption = Annotated[float, typer.Option("--semiangle", help="Convergence semi-angle, in mrad.")]


def _fit_microscope(ctx: typer.Context, energy: float, semiangle: float, fits: bool, needs: str
                    ) -> Microscope | None:
    """The :class:`~clusterspy.simulation.Microscope` of ``--energy`` and ``--semiangle`` when the
    command fits (``fits``), else None; refuses either option typed without ``needs`` (the option
    that fits), as ``--element`` is refused."""
    from clusterspy.errors import ConfigError

    typed = [f"--{name}" for name in ("energy", "semiangle")
             if getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"]
    if typed and not fits:
        raise ConfigError(f"{' and '.join(typed)} {'is' if len(typed) == 1 else 'are'} for the microscope of "
                          f"the structure fit of {needs}: add {needs}")
    if not fits:
        return None
    from clusterspy.simulation import Microscope

    return Microscope(energy_keV=energy, semiangle_mrad=semiangle)


def _signal_choice(value: str | None) -> int | str | None:
    """``--signal``: an index (digits) as an int, otherwise a title."""
    if value is None:
        return None
    return int(value) if value.strip().isdigit() else value


#: What an interrupted command keeps and how to continue it (set by a command whose output
#: resumes, once its output folder is known; reset by :func:`main`).
_ON_INTERRUPT: dict[str, Any] = {"note": None, "kept": None, "terminated": False, "instead": None}


def _kept_on_interrupt(what: str, out: Path, *, not_with: str | None = None,
                       kept: Callable[[], bool] | None = None) -> None:
    """Say, should Ctrl-C stop this command, that the ``what`` finished so far stay in ``out`` and a
    rerun continues them; ``not_with``: the option given that would start afresh on a rerun
    (``--restart``, ``--no-resume``), so the advice drops it; ``kept``: whether anything is kept
    yet (when not, the line says that nothing was finished)."""
    again = "run the same command again" if not_with is None else f"run the same command without {not_with}"
    _ON_INTERRUPT["note"] = f"the {what} finished so far are kept in {out}; {again} to continue"
    first = what.split()[0].rstrip("s")
    _ON_INTERRUPT["kept"] = None if kept is None else (
        kept, f"stopped before its first {first} was finished: no {first} of this run is kept in {out} (only "
              f"its settings); a rerun starts from the first")


def _series_finished_note(out: Path) -> Callable[[], str | None]:
    """The line of a series stopped after its frames and ``summary.json`` were written (while its
    report was drawn): all of them are kept, and a rerun only draws the report (a newcomer's was told
    "the frames finished so far are kept" of all 400). None while the run is not that far."""
    def note() -> str | None:
        import json

        from clusterspy.series.manifest import MANIFEST_NAME, PROGRESS_KEY

        try:
            progress = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8")).get(PROGRESS_KEY) or {}
        except (OSError, ValueError, AttributeError):
            return None
        if not progress.get("finished"):
            return None
        n = progress.get("frames_classified")
        return (f"all {n} frames and summary.json are kept in {out}; the report was not finished — run the "
                "same command again to draw it")

    return note


def _frames_kept(out: Path) -> Callable[[], bool]:
    """Whether a series folder's ``frames.csv`` holds a frame's row (for :func:`_kept_on_interrupt`)."""
    def kept() -> bool:
        try:
            with open(out / "frames.csv", encoding="utf-8") as fh:
                return sum(1 for line in fh if line.strip()) > 1
        except OSError:
            return False

    return kept


@app.command()
def classify(
    ctx: typer.Context,
    paths: Annotated[
        list[Path],
        typer.Argument(help="Image files (.tif .png .npy .npz .dm3 .dm4 .emd .hspy ...) or folders of "
                       "them (a batch: each image on its own)."),
    ],
    pixel_size: PixelSize = None,
    fmt: Annotated[
        OutputFormat, typer.Option("--format", help="Output format on stdout.")
    ] = OutputFormat.table,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for results (JSON, CSV), settings.json and overlay PNGs."),
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help=MODEL_HELP)
    ] = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Also save occlusion-saliency maps (needs --out).")
    ] = False,
    contrast: ContrastOption = Contrast.auto,
    min_size: Annotated[
        float | None,
        typer.Option("--min-size", help="Smallest cluster diameter reported, in nm (default: 0.8 × the "
                     "model's smallest, so smaller clusters are named too_small)."),
    ] = None,
    max_size: Annotated[
        float | None,
        typer.Option("--max-size", help="Largest cluster diameter reported, in nm (default: 2.5 × the "
                     "model's largest, so larger particles are named too_large)."),
    ] = None,
    border: Annotated[
        Border,
        typer.Option(help="Clusters touching the image edge: 'flag' (unknown, cut_by_edge) or 'skip'."),
    ] = Border.flag,
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="Local processes classifying files at once (default: one per "
                     "core; 1 = in this process)."),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option("--scheduler", help="Address of a Dask distributed scheduler (tcp://host:port) to "
                     "classify the files on its workers (needs the 'batch' extra; same paths there)."),
    ] = None,
    restart: Annotated[
        bool, typer.Option("--restart", help="Forget what an earlier batch wrote into --out; start afresh.")
    ] = False,
    signal: SignalOption = None,
    verify: Annotated[
        bool,
        typer.Option("--verify", help="Check every label that stands with a 3D structure fit (as 'clusterspy "
                     "fit'; 4–8 s per cluster on 2 cores, up to a minute for 6 nm): fit_* columns in the "
                     "results, 'unknown' with reason fit_disagrees when a conclusive fit finds another "
                     "isomer or lines up only at the end of its ±15 % scale range; with --out a fit figure "
                     "per cluster."),
    ] = False,
    element: Annotated[
        str | None,
        typer.Option("--element", help="With --verify or --calibrate: the metal of the clusters (Au, Pt, Pd, "
                     "Ag, Cu, ...; default Au)."),
    ] = None,
    energy: EnergyOption = 200.0,
    semiangle: SemiangleOption = 25.0,
    calibrate: Annotated[
        bool,
        typer.Option("--calibrate", help="Check the pixel size against the lattice of the crystalline "
                     "clusters (--element's lattice constant: a wrong element gives a wrong pixel size; "
                     "the three largest clusters, a few seconds each, 20 s for a 6 nm particle) and classify "
                     "at the corrected pixel size when it is more than 5 % off; a note says what was used."),
    ] = False,
) -> None:
    """Classify every cluster in each image (every frame of a multi-frame file).

    Several files, or a folder (its image files), make a batch: a file that fails (unreadable,
    no cluster, outside the model's domain) is reported on stderr and in files.csv, and the
    others go on. With --out each file's results are written as soon as it is done, and a rerun
    with the same --out skips the files already done.

    A cluster the model cannot judge is labelled 'unknown' with the reason (too small or large,
    cut by the edge, a neighbour in view, not resolved, out of distribution, low confidence);
    an image outside the model's domain (pixel size, contrast) is refused with one line.

    With --verify each label that stands is checked by physics: the 3D atomic model whose
    simulation matches the cluster best. A conclusive fit of another isomer turns the label
    into 'unknown' (fit_disagrees); an inconclusive fit leaves it, with the fit's reason shown.

    With --calibrate the pixel size is checked against the clusters' lattice (a ±15 % error
    turns most labels into 'unknown' or, rarely, into wrong ones); a note says what was used.

    Exit status: 0 when every file was classified; 3 when some files failed (all other results
    still written); 2 for a usage error, or when the one file given cannot be classified.
    """
    from clusterspy.batch import figure_message, run_batch
    from clusterspy.errors import ClusterSpyError, ConfigError
    from clusterspy.image import overridden_calibration_A
    from clusterspy.workflows import format_results

    if explain and out is None:
        raise ConfigError("--explain writes saliency images: give an output folder with --out DIR")
    if restart and out is None:
        raise ConfigError("--restart starts an output folder afresh: give it with --out DIR")
    if scheduler is not None and workers is not None:
        raise ConfigError("--workers is for local processes; with --scheduler the cluster's workers are used")
    if element is not None and not (verify or calibrate):
        raise ConfigError("--element names the metal for the structure fit of --verify or --calibrate: add "
                          "one of them")
    microscope = _fit_microscope(ctx, energy, semiangle, verify or calibrate, "--verify or --calibrate")
    options = {"contrast": contrast.value, "min_size_nm": min_size, "max_size_nm": max_size,
               "border": border.value}
    if out is not None:  # each file's results are written as it is done; a rerun skips those
        _kept_on_interrupt("files", out, not_with="--restart" if restart else None)
    if calibrate and element is None:
        typer.echo(f"clusterspy: note: {AU_RULER_NOTE}", err=True)
    for note in _element_notes(element, model):
        typer.echo(f"clusterspy: note: {note}", err=True)
    if verify or calibrate:  # minutes of fitting would pass in silence (in a log too: a newcomer's 96 s)
        slow = []
        if calibrate:
            slow.append("--calibrate fits the lattice of up to 3 clusters a frame (a few seconds each)")
        if verify:
            slow.append("--verify fits a 3D structure to every labelled cluster (4–8 s each on 2 cores, up "
                        "to a minute for a 6 nm particle)")
        typer.echo(f"clusterspy: {'; '.join(slow)}: this can take minutes…", err=True)
    batch = run_batch(paths, out=out, pixel_size_A=pixel_size, model_path=model, options=options,
                      explain=explain, workers=workers, scheduler=scheduler, restart=restart,
                      signal=_signal_choice(signal), verify=verify, element=element or "Au",
                      microscope=microscope, calibrate=calibrate)
    single = len(paths) == 1 and not paths[0].is_dir()
    if single and batch.parts and batch.parts[0]["status"] in ("failed", "error"):
        raise ClusterSpyError(batch.parts[0]["failures"][0]["message"])  # one file: its error, exit 2
    for part in batch.parts:
        for warning in part.get("warnings", ()):  # each once, also from worker processes
            typer.echo(f"clusterspy: warning: {warning}", err=True)
        info = part["info"]
        own = info.get("file_pixel_size_A")
        if info.get("pixel_size_A") and overridden_calibration_A(info, info["pixel_size_A"]) is not None:
            typer.echo(f"clusterspy: note: {part['file']}: --pixel-size {info['pixel_size_A']:g} Å/px "
                       f"overrides the file's own calibration ({own:g} Å/px)", err=True)
        for cal in info.get("calibration", ()):
            frame = f" (frame {cal['frame']})" if info.get("frames", 1) > 1 else ""
            over = (" — over the file's own calibration" if cal["corrected"] and own
                    and abs(own / cal["given_pixel_size_A"] - 1) < 0.01 else "")
            again = " (each cluster's model chosen again by its size there)" if cal["corrected"] else ""
            typer.echo(f"clusterspy: note: {part['file']}{frame}: {cal['message']}{over}{again}", err=True)
        for note in _pixel_routing_notes(info.get("pixel_size_A"), model):
            typer.echo(f"clusterspy: note: {part['file']}: {note}", err=True)
        if part.get("figure_error") or part.get("figure_note"):
            typer.echo(f"clusterspy: note: {part['file']}: {figure_message(part)}", err=True)
    for line in _failure_lines(batch.failures()):
        typer.echo(f"clusterspy: {line}", err=True)
    if out is not None:
        skipped = f" ({batch.skipped} file(s) already done there skipped)" if batch.skipped else ""
        typer.echo(f"results written to {out}{skipped}", err=True)
    results = batch.results()
    typer.echo(format_results(results, fmt.value))
    for note in [*_other_model_notes(results, model), *_edge_notes(results),
                 *_unsure_notes(results, calibrate), *_searched_notes(results, calibrate),
                 *_scale_notes(results), *_elongated_notes(results), *_saturated_notes(results),
                 *_no_lattice_notes(results), *_unresolved_notes(results), *_astigmatic_notes(results)]:
        typer.echo(f"clusterspy: note: {note}", err=True)
    if verify:
        for note in _fit_notes(results):
            typer.echo(f"clusterspy: note: {note}", err=True)
    if batch.exit_code:
        typer.echo(f"clusterspy: {len(batch.failed_files)} of {len(batch.parts)} files had errors "
                   f"(listed above; files.csv with --out); exit status {batch.exit_code}", err=True)
        raise typer.Exit(batch.exit_code)


def _failure_lines(failures: list[dict]) -> list[str]:
    """One line per failed file (frame), ``"FILE (frame K): message"`` — or, for a message three or
    more files share word for word (a pixel size no model judges, given for a whole folder), one line
    naming how many and the first (a newcomer's 33 wide fields at 2 Å/px printed 33 such lines)."""
    from collections import defaultdict

    where = [f["file"] if f["frame"] is None else f"{f['file']} (frame {f['frame']})" for f in failures]
    by_message: dict[str, list[str]] = defaultdict(list)
    for w, f in zip(where, failures, strict=True):
        by_message[str(f["message"])].append(w)
    lines = []
    for message, files in by_message.items():
        if len(files) >= 3:
            lines.append(f"{len(files)} files (the first {files[0]}): {message}")
        else:
            lines += [f"{w}: {message}" for w in files]
    return lines


def _unsure_notes(results: list, calibrated: bool) -> list[str]:
    """One line when at least half the clusters the network judged are ``low_confidence``,
    ``models_disagree`` or ``out_of_distribution`` (without ``--calibrate``): a pixel size 15–20 %
    off does this, and the lattice can check it (as a series' few-labels warning says). Where
    the second opinion withdrew labels of isomernet-v3, one more line says that those need not mean a wrong
    calibration (a newcomer's decahedra at their exact pixel size were sent to check it)."""
    from collections import Counter

    from clusterspy.predict import SECOND_OPINION

    v3_disputed = sum(r.reason == "models_disagree" and str(r.model or "").split("@")[0] == "isomernet-v3"
                      for r in results)
    v3_note = ([f"{v3_disputed} cluster{'' if v3_disputed == 1 else 's'} judged by isomernet-v3 "
                f"models_disagree: {SECOND_OPINION} finds another isomer most probable than v3's label — not "
                "only a wrong pixel size: v3 calls some decahedra of 3.3–4.35 nm fcc at their exact pixel "
                "size (the README's 'When to trust a label'); --model isomernet-v5 judges particles from "
                "2.5 nm with a finer crop"] if v3_disputed else [])

    kinds = ("low_confidence", "models_disagree", "out_of_distribution")
    counts = Counter(r.reason for r in results if r.reason in kinds)
    unsure = sum(counts.values())
    judged = unsure + sum(r.reason is None for r in results)
    if calibrated or unsure == 0 or unsure < 0.5 * judged or unsure == v3_disputed:
        return v3_note
    why = ", ".join(f"{counts[k]} {k}" for k in kinds if counts[k])
    disputed = ""
    if counts["models_disagree"]:
        disputed = (f" (models_disagree: {SECOND_OPINION}, trained with pixel-size errors and astigmatic "
                    "probes, finds an isomer other than the label of isomernet-v2, v3 or v5 most "
                    "probable)")
    return [f"{unsure} of the {judged} clusters the network judged got no label ({why}){disputed}: "
            "one of five causes, most often — a pixel size more than 15 % off (by default the clusters "
            "isomernet-v2 judges are also tried at 15 % either side; see the README's 'When to trust a "
            "label'; --calibrate --element <metal> checks it against the clusters' lattice); columns the "
            "image does not resolve, or hides by smoothing, denoising or a high-pass 'background "
            "subtraction' (an image minus its blur: give the raw image); regions "
            "filled with a constant (the corners of an image rotated with zeros: fill them with the "
            "background); an astigmatic probe (columns drawn out along one direction: correct it before "
            "recording); or clusters unlike any in training (their look, or neighbours in the crop)",
            *v3_note]


def _searched_notes(results: list, calibrated: bool = False) -> list[str]:
    """One line when labels were found only at a pixel size 15 % from the one given (the default's
    pixel-size search, ``pixel_size_factor``): the calibration may be off by as much — unless
    ``--calibrate`` measured it (``calibrated``), where a newcomer was told both that the lattice
    agreed with it and that it may be off: then the cause more likely lies in the clusters' look."""
    from clusterspy.predict import SECOND_OPINION, searched_at

    factors = [r.pixel_size_factor for r in results if r.label != "unknown" and r.pixel_size_factor != 1.0]
    if not factors:
        return []
    n, labelled = len(factors), sum(r.label != "unknown" for r in results)
    tried, at = searched_at(factors)
    which = ("the label was" if labelled == 1 else
             f"{n} of the {labelled} labels {'was' if n == 1 else 'were'}")
    return [f"{which} found only with the pixel size given times {tried} ({at}; pixel_size_factor "
            "in JSON and CSV, px× in the table): isomernet-v2 could not label "
            f"{'it' if n == 1 else 'them'} at the pixel size given, and {SECOND_OPINION} agreed at "
            "both pixel sizes; "
            + ("--calibrate measured the pixel size against the clusters' lattice (see its note): "
                         "where it agreed, the clusters look unlike the training set's at their own scale "
                         "(a metal other than the model card's, a lattice strained) rather than the "
                         "calibration being off — check such labels with --verify"
                         if calibrated else
                         "the calibration may be off by as much — --calibrate --element <metal> measures it "
                         "against the clusters' lattice; where it agrees, suspect a blurred image "
                         "(focus, astigmatism) instead: a newcomer's exactly calibrated clusters blurred "
                         "by 0.5 Å got wrong labels so (stop 41)")]


def _element_notes(element: str | None, model: Path | None) -> list[str]:
    """One line when ``--element`` names a metal outside every model card's ``elements``: a newcomer's
    simulated Pb decahedron was fcc 0.999 after ``--calibrate --element Pb`` said the pixel size agreed,
    and nothing said the networks never saw Pb."""
    from clusterspy.predict import ModelsBySize, load_model

    if element is None:
        return []
    loaded = load_model(model)
    cards = [m.card for m in loaded.models] if isinstance(loaded, ModelsBySize) else [loaded.card]
    known = sorted({str(e) for c in cards for e in c.domain.get("elements", ())})
    if not known or element in known:
        return []
    from clusterspy.errors import ClusterSpyError

    try:
        from clusterspy.structures import lattice_constant

        a, au = lattice_constant(element), lattice_constant("Au")
    except (ClusterSpyError, ImportError):  # not an fcc metal ASE knows: the fit says so itself
        return []
    off = f"{100 * abs(a / au - 1):.0f} % {'larger' if a > au else 'smaller'}"
    return [f"--element {element}: the networks were trained on {', '.join(known)} only; {element}'s "
            f"lattice (a = {a:.2f} Å) is {off} than Au's, so its clusters look like Au told a pixel size "
            "off by as much: their labels are less "
            f"sure than the README's figures — check them with --verify --element {element}"]


def _counted_note(n: int, what: str, text: str) -> list[str]:
    """``["<n> cluster(s) <what>: <text>"]``, or no line when ``n`` is 0."""
    return [f"{n} cluster{'' if n == 1 else 's'} {what}: {text}"] if n else []


#: The note per reason that says the pixel size given is off, and which way: a newcomer's
#: ``scale_mismatch`` said neither which way nor that 15 % can do it; another's Pb told 2× its pixel
#: size was "fcc 1.00" at twice its diameter, with no word of the calibration.
SCALE_NOTES = {
    "scale_mismatch":
        "the lattice fringes look finer than any metal's at the pixel size given, which is likely too small "
        "— by 2–3× (pm read as Å, or a binned image whose calibration was not updated), or by 15 % or more "
        "on very sharp images, or after a high-pass filter (an image minus its blur) that left only the "
        "columns; check the calibration by hand (--pixel-size, Å/px): --calibrate --element "
        "<metal> measures it only once it is within ±15 %",
    "pixel_size_too_large":
        "the strongest lattice fringes look coarser than any metal's at the pixel size given, which is "
        "likely 1.5× or more too large (their diameters too; an upsampled image whose calibration was not "
        "updated?); check it by hand (--pixel-size, Å/px): --calibrate --element <metal> measures it only "
        "once it is within ±15 %",
}


def _scale_notes(results: list) -> list[str]:
    """One line per reason of :data:`SCALE_NOTES` that some clusters got."""
    return [line for reason, text in SCALE_NOTES.items()
            for line in _counted_note(sum(r.reason == reason for r in results), reason, text)]


def _elongated_notes(results: list) -> list[str]:
    """One line for the clusters ``elongated``: a newcomer's overlapping pairs of particles, measured as
    one cluster, were labelled one isomer with confidence ≥ 0.96 (stop 38)."""
    from clusterspy.domain import ELONGATION_MAX

    n = sum(r.reason == "elongated" for r in results)
    return _counted_note(
        n, "elongated",
        f"{'its' if n == 1 else 'their'} outline is more than {ELONGATION_MAX:g}× as long as wide, more "
        "elongated than any single cluster the models were tested on: most often two overlapping or "
        "coalescing particles found as one (one label would be a claim about two), or a rod")


def _saturated_notes(results: list) -> list[str]:
    """One line for the clusters ``saturated``: a newcomer's 8-bit exports, contrast stretched until the
    brightest columns clipped, turned decahedra into fcc 0.94–1.00 without a word."""
    from clusterspy.domain import SATURATED_MIN_SHARE

    n = sum(r.reason == "saturated" for r in results)
    return _counted_note(
        n, "saturated",
        f"a plateau of the image's maximum covers {100 * SATURATED_MIN_SHARE:g} % or more of "
        f"{'its' if n == 1 else 'their'} box — the brightest columns are clipped, and with them the column "
        "intensities that tell the isomers apart (a saturated detector, or an export that stretched the "
        "contrast, e.g. to 8 bits): give the raw data")


def _no_lattice_notes(results: list) -> list[str]:
    """One line for the clusters the network saw that are ``not_resolved`` because their spectrum shows
    no lattice (:func:`clusterspy.domain.crystal_evidence_missing`) or, for an amorphous call, no
    resolved structure at all (:func:`clusterspy.domain.amorphous_evidence_missing`; after inference:
    they have a confidence): most often a smoothed or denoised image of an unresolved particle, or a
    crystal blurred or off its zone axis."""
    n = sum(r.reason == "not_resolved" and r.confidence is not None for r in results)
    return _counted_note(
        n, "not_resolved although the network saw " + ("it" if n == 1 else "them"),
        "a crystalline label needs lattice spots in the cluster's spectrum, and an amorphous one a ring of "
        "atomic spacings, and there are none — the atoms are not resolved (focus, astigmatism, drift, the "
        "pixel size, a crystal off its zone axis), or the image was smoothed or denoised, which hides that "
        "from the noise check: give the raw image")


def _unresolved_notes(results: list) -> list[str]:
    """One line for the clusters ``not_resolved`` before inference (no confidence): a newcomer's raw
    unresolved particles, and a sharp one told 2× its pixel size, got no advice at all."""
    n = sum(r.reason == "not_resolved" and r.confidence is None for r in results)
    return _counted_note(
        n, "not_resolved",
        f"no atomic columns show in {'its' if n == 1 else 'their'} spectrum at the pixel size given (lattice "
        "fringes of 1.25–3.2 Å) — out of focus, astigmatism, drift, a pixel too coarse for columns, or a "
        "pixel size told wrong (a 2× error moves the fringes out of that band)")


def _astigmatic_notes(results: list) -> list[str]:
    """One line for the clusters ``astigmatic``: a newcomer's clusters blurred with elliptical probes got
    confident wrong labels from the models that judge, with the second opinion agreeing (stop 40)."""
    n = sum(r.reason == "astigmatic" for r in results)
    if not n:
        return []
    from clusterspy.predict import ASTIGMATISM
    from clusterspy.weights.astigmatism import ASTIGMATISM_DIR, three_fold_threshold_of

    # the card only: no network loaded
    threshold, rad = three_fold_threshold_of(ASTIGMATISM_DIR.parent / str(ASTIGMATISM))
    by = f" by {threshold:g} Å FWHM or more" if threshold is not None else ""
    three = (f", or a three-fold astigmatism of {rad:g} rad or more at the aperture's edge" if rad is not None
             else "")
    return _counted_note(
        n, "astigmatic",
        f"the probe looks astigmatic: {'its' if n == 1 else 'their'} atomic columns look drawn out along one "
        f"direction ({ASTIGMATISM or 'the probe-shape network'} estimates the source drawn out{by}{three}), "
        "and the models that judge were trained on round, sharp probes only, so a label would be a guess — "
        f"correct the astigmatism (stigmators, or the corrector's A1{' and A2' if rad is not None else ''}) "
        "and the focus, and take the image again (a strong round blur, > 1 Å FWHM, is sometimes taken for "
        "astigmatism)")


def _fit_notes(results: list) -> list[str]:
    """``classify --verify``: each fit's own note (a scale or blur that points to a wrong pixel size or
    element), and one line when no cluster had a label to check."""
    notes = [f"{r.file} cluster {r.cluster}: fit: {r.fit['note']}" for r in results
             if r.fit and r.fit.get("note")]
    if results and not any(r.fit and (r.fit.get("isomer") or r.fit.get("reason")) for r in results):
        notes.append("--verify fitted no cluster: only labels that stand are checked, and none did "
                     "(their reasons are in the table)")
    return notes


def _edge_notes(results: list) -> list[str]:
    """One line for the clusters ``cut_by_edge``: how much room the particle needs, or ``--border skip``."""
    sizes = [r.diameter_nm for r in results if r.reason == "cut_by_edge" and r.diameter_nm is not None]
    if not sizes:
        return []
    # the detector's region must end edge_margin_px (the rim it misses) from the edge, and a cut
    # particle's region is measured short: a newcomer's PtIr (3.1 nm) padded by 3.6 Å was still cut,
    # by 4.8 Å not; a fifth of the diameter leaves room
    room_A = max(5.0, 0.2 * 10.0 * max(sizes))
    n = len(sizes)
    return [f"{n} cluster{'' if n == 1 else 's'} touch{'es' if n == 1 else ''} the image edge (cut_by_edge): "
            f"the network sees whole particles only: frame each with its rim at least {room_A:.0f} Å inside "
            "the image (crop wider), or pass --border skip to leave such clusters out. The edge of an "
            "exactly constant region counts too (a rotation's fill, padding, a burned-in scale bar or its "
            "text) — and a vacuum of exact zeros "
            "can look like one along a straight facet: a noise-free or very-low-count simulation, or zeros a "
            "median filter, a threshold or a background subtracted and clipped at 0 made (give the raw "
            "data)"]


def _pixel_routing_notes(px: float | None, model: Path | None) -> list[str]:
    """With the size-routed default: the models that cannot judge an image at ``px`` [Å/px] (outside
    their pixel-size range), so that the others judged every cluster of it. None where no model can
    judge it (the image's refusal says why: a batch at 2 Å/px printed 99 notes that other models
    judged clusters no model judged)."""
    from clusterspy.domain import pixel_size_range_A
    from clusterspy.predict import ModelsBySize, load_model, routing_domain

    loaded = load_model(model)
    if px is None or not isinstance(loaded, ModelsBySize):
        return []
    ranges = [pixel_size_range_A(m.card.domain) for m in loaded.models]  # as check_image applies them
    if not any(lo <= px <= hi for lo, hi in ranges):
        return []
    notes = []
    for m, (lo, hi) in zip(loaded.models, ranges, strict=True):
        if not lo <= px <= hi:
            d_lo, d_hi = (float(v) for v in m.card.domain.get("diameter_nm", [0.0, float("inf")]))
            rest = [o for o in loaded.models if o is not m]
            # the models whose range in the default meets its sizes took its clusters
            took = [o for o in rest if (r := (routing_domain(o) or {}).get("diameter_nm")) is None
                    or (float(r[0]) <= d_hi and float(r[1]) >= d_lo)] or rest
            notes.append(f"at {px:g} Å/px {m.card.name} cannot judge (it needs {lo:g}–{hi:g} Å/px): "
                         f"{' and '.join(o.card.name for o in took)} judged the clusters of its sizes "
                         f"({d_lo:g}–{d_hi:g} nm) too")
    return notes


def _other_model_notes(results: list, model: Path | None) -> list[str]:
    """For clusters ``too_large`` (``too_small``): the shipped model whose domain covers them, in one
    line each — or, with the size-routed default, that no shipped model does. A cluster ``too_large``
    that the network saw (it has a confidence) was called amorphous above the largest glassy cluster
    trained on: a line of its own (a newcomer's 5 nm cluster was told "too large for every shipped
    model (together 0.87–10.54 nm)")."""
    from clusterspy.predict import ModelsBySize, load_model, shipped_model_covering

    loaded = None
    notes = _counted_note(
        sum(r.reason == "too_large" and r.confidence is not None for r in results),
        "too_large for a glassy call",
        "the network called them amorphous, but glassy clusters were trained only on smaller sizes — a "
        "crystal it could not see (focus, drift, orientation) or a large glassy particle; no model judges "
        "that")
    for reason, word in (("too_large", "large"), ("too_small", "small")):
        sizes = [r.diameter_nm for r in results if r.reason == reason and r.diameter_nm is not None
                 and r.confidence is None]
        if not sizes:
            continue
        loaded = loaded or load_model(model)
        n = len(sizes)
        some = f"{n} cluster{'' if n == 1 else 's'} too {word}"
        if isinstance(loaded, ModelsBySize):  # every shipped model was tried: say what the widest covers
            lo = min(float(m.card.domain["diameter_nm"][0]) for m in loaded.models)
            hi = max(float(m.card.domain["diameter_nm"][1]) for m in loaded.models)
            notes.append(f"{some} for every shipped model (together {lo:g}–{hi:g} nm); if the particle is "
                         "smaller than that, check the pixel size")
            continue
        card = loaded.card
        other = shipped_model_covering(sizes, exclude=card.name)
        if other is None:
            continue
        lo, hi = card.domain.get("diameter_nm", [None, None])
        limit = f" (≤ {hi:g} nm)" if word == "large" and hi else f" (≥ {lo:g} nm)" if lo else ""
        notes.append(f"{some} for {card.name}{limit}; --model {other[0]} covers {other[1][0]:g}–"
                     f"{other[1][1]:g} nm (the default, --model auto, sends each cluster to the model "
                     "that covers it)")
    return notes


@app.command()
def series(
    ctx: typer.Context,
    path: Annotated[
        Path,
        typer.Argument(
            help="A multi-frame file (.dm4 stack, Velox .emd, .tif, .hspy, .npy, or .npz with 'frames' and "
                 "'pixel_size_A') or a folder of images."
        ),
    ],
    pixel_size: PixelSize = None,
    frame_time: Annotated[
        float | None, typer.Option("--frame-time", help="Time between frames, in s.")
    ] = None,
    out: Annotated[
        Path, typer.Option(help="Output folder (frames.csv, summary.json, strip.png, report.html).")
    ] = Path("clusterspy_series"),
    fmt: Annotated[str, typer.Option("--format", help="'table' or 'json' (summary on stdout).")] = "table",
    model: Annotated[
        Path | None, typer.Option(help=MODEL_HELP)
    ] = None,
    contrast: ContrastOption = Contrast.auto,
    temperature: Annotated[
        float | None,
        typer.Option(
            "--temperature-K",
            help="Specimen temperature, in K; recorded in summary.json for 'clusterspy thermo'.",
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume/--no-resume",
            help="Continue an interrupted run found in --out (same input and settings, checked "
            "against OUT/run.json); --no-resume starts afresh, replacing what OUT holds.",
        ),
    ] = True,
    report: Annotated[
        bool,
        typer.Option("--report/--no-report",
                     help="Draw strip.png and report.html (with saliency overlays: slow) after the "
                     "data files."),
    ] = True,
    signal: SignalOption = None,
    verify_sample: Annotated[
        int,
        typer.Option("--verify-sample", help="Fit a 3D structure (as 'clusterspy fit') to at most K frames "
                     "spread over the run (the first of each run of one label) and show data | fitted model "
                     "with the fit's isomer and NCC in report.html; prints how many fits agree with the "
                     "smoothed label, disagree or are inconclusive (also in summary.json); frames.csv is "
                     "unchanged. 0: none.",
                     metavar="K"),
    ] = 0,
    element: Annotated[
        str | None,
        typer.Option("--element", help="With --verify-sample or --calibrate: the metal of the cluster "
                     "(Au, Pt, ...; default Au)."),
    ] = None,
    energy: EnergyOption = 200.0,
    semiangle: SemiangleOption = 25.0,
    calibrate: Annotated[
        bool,
        typer.Option("--calibrate", help="Check the pixel size against the lattice of the crystalline "
                     "clusters of the first frames (--element's lattice constant: a wrong element gives a "
                     "wrong pixel size; the median of up to 3 clusters, a few seconds each) and classify the "
                     "whole series at the corrected pixel size when it is more than 5 % off; a note says "
                     "what was used (also in summary.json)."),
    ] = False,
) -> None:
    """Classify every frame of a series of one (or several) clusters; HMM smoothing, statistics, report.

    One run at a time per --out folder (OUT/.clusterspy.lock). A run killed at any point continues
    where it stopped when started again with the same command, with the same results.
    """
    import json
    import logging
    import math

    from clusterspy.errors import ConfigError
    from clusterspy.workflows import classify_series, frames_progress

    if fmt not in ("table", "json"):
        raise ConfigError(f"--format {fmt!r} is not known; use 'table' or 'json'")
    if verify_sample < 0:
        raise ConfigError(f"--verify-sample {verify_sample}: give the number of frames to fit (0 = none)")
    if verify_sample and not report:
        raise ConfigError("--verify-sample shows its fits in report.html: drop --no-report")
    if element is not None and not (verify_sample or calibrate):
        raise ConfigError("--element names the metal for the structure fits of --verify-sample or "
                          "--calibrate: add --verify-sample K or --calibrate")
    microscope = _fit_microscope(ctx, energy, semiangle, bool(verify_sample) or calibrate,
                                 "--verify-sample K or --calibrate")
    if calibrate and element is None:
        typer.echo(f"clusterspy: note: {AU_RULER_NOTE}", err=True)
    for note in _element_notes(element, model):
        typer.echo(f"clusterspy: note: {note}", err=True)
    if temperature is not None and not (math.isfinite(temperature) and temperature > 0):
        raise ConfigError(f"--temperature-K {temperature:g} is not a temperature; give the specimen "
                          "temperature in K (above 0)")
    loaded = None
    if model is not None:
        from clusterspy.predict import load_model

        loaded = load_model(model)
    _kept_on_interrupt("frames and structure fits" if verify_sample else "frames", out,
                       not_with=None if resume else "--no-resume",  # run.json + checkpoint, verify_sample/
                       kept=_frames_kept(out))
    if resume:
        _ON_INTERRUPT["instead"] = _series_finished_note(out)
    series_log = logging.getLogger("clusterspy.series")  # its warnings: printed below, once
    level = series_log.level
    series_log.setLevel(logging.ERROR)
    try:
        with frames_progress(sys.stderr.isatty()) as progress:
            result = classify_series(path, pixel_size_A=pixel_size, frame_time_s=frame_time, model=loaded,
                                     out=out, contrast=contrast.value, temperature_K=temperature,
                                     resume=resume, report=report, signal=_signal_choice(signal),
                                     verify_sample=verify_sample, calibrate=calibrate,
                                     element=element or "Au", microscope=microscope, progress=progress,
                                     announce=lambda line: typer.echo(f"clusterspy: {line}", err=True))
    finally:
        series_log.setLevel(level)
    if fmt == "json":
        typer.echo(json.dumps(result.summary, indent=2, default=str))
    else:
        typer.echo(result.describe(warnings=False))
    for warning in result.summary.get("warnings", []):
        typer.echo(f"clusterspy: warning: {' '.join(str(warning).split())}", err=True)
    typer.echo(f"outputs written to {out}", err=True)


@app.command()
def thermo(
    tables: Annotated[
        list[Path],
        typer.Argument(
            help="CSV with temperature_K (K) and label columns, or series output folders made with "
            "'clusterspy series --temperature-K'."
        ),
    ],
    fmt: Annotated[str, typer.Option("--format", help="'table' or 'json'.")] = "table",
    out: Annotated[Path | None, typer.Option(help="Output folder (thermo.json, plots, report.html).")] = None,
    reference: Annotated[
        str | None, typer.Option(help="Reference isomer (default: the most populated).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
) -> None:
    """Free-energy differences (van 't Hoff) and barriers (Arrhenius) from labels at several temperatures."""
    from clusterspy import thermo as th
    from clusterspy.errors import ConfigError

    if fmt not in ("table", "json"):
        raise ConfigError(f"--format {fmt!r} is not known; use 'table' or 'json'")
    source = tables[0] if len(tables) == 1 else tables
    result = th.thermo_from_table(source, reference=reference, seed=seed)
    if out is not None:
        from clusterspy.workflows import write_thermo_report

        write_thermo_report(result, out)
        typer.echo(f"outputs written to {out}", err=True)
    typer.echo(th.thermo_json(result) if fmt == "json" else th.format_thermo(result))


@app.command()
def simulate(
    motif: Annotated[str, typer.Option(help="icosahedral | decahedral | fcc | amorphous")] = "icosahedral",
    size: Annotated[int, typer.Option(help="Number of atoms.")] = 309,
    element: Annotated[str, typer.Option(help="Chemical symbol.")] = "Au",
    backend: Annotated[str, typer.Option(help="'fast' or 'prism' (abTEM).")] = "fast",
    energy: Annotated[float, typer.Option("--energy", help="Beam energy, in keV.")] = 200.0,
    semiangle: Annotated[
        float, typer.Option("--semiangle", help="Probe convergence semi-angle, in mrad.")
    ] = 25.0,
    pixel_size: Annotated[float, typer.Option("--pixel-size", help="Pixel size, in Å/px.")] = 0.2,
    extent: Annotated[float, typer.Option(help="Field of view, in Å.")] = 40.0,
    dose: Annotated[
        float | None, typer.Option(help="Electron dose, in e⁻/Å² (Poisson noise); none: noiseless.")
    ] = None,
    source_size: Annotated[
        float, typer.Option("--source-size", help="Effective source size (FWHM of the probe's incoherent "
                            "blur), in Å; 0 is an ideal probe, sharper than any microscope's.")
    ] = SOURCE_SIZE_A,
    source_elongation: Annotated[
        float, typer.Option("--source-elongation", help="An astigmatic (elliptical) probe, to first order: "
                            "the source's extra FWHM along one direction, in Å (in quadrature with "
                            "--source-size); 0 is a round probe.")
    ] = 0.0,
    source_angle: Annotated[
        float, typer.Option("--source-angle", help="Direction of --source-elongation, in degrees from the "
                            "image's x axis towards its y axis (rows).")
    ] = 0.0,
    three_fold: Annotated[
        float, typer.Option("--three-fold", help="Three-fold astigmatism C23 (A2) of the probe, in Å "
                            "(1 µm = 10000 Å; at 25–28 mrad it blurs columns from ~2000 Å, and a tuned "
                            "corrector keeps it under ~500 Å); 0: none.")
    ] = 0.0,
    three_fold_angle: Annotated[
        float, typer.Option("--three-fold-angle", help="Azimuth of --three-fold, in degrees from the "
                            "image's x axis towards its y axis (rows); it repeats every 120°.")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Random seed (structure, orientation, noise).")] = 0,
    out: Annotated[Path, typer.Option(help="Output .npz (image, pixel_size_A, metadata) or .tif.")] = Path(
        "simulated.npz"
    ),
) -> None:
    """Build a cluster and simulate its HAADF-STEM image."""
    from clusterspy.workflows import simulate_to_file

    written = simulate_to_file(
        motif=motif,
        size=size,
        element=element,
        backend=backend,
        energy_keV=energy,
        semiangle_mrad=semiangle,
        pixel_size_A=pixel_size,
        extent_A=extent,
        dose_e_per_A2=dose,
        source_size_A=source_size,
        source_elongation_A=source_elongation,
        source_angle_deg=source_angle,
        three_fold_A=three_fold,
        three_fold_angle_deg=three_fold_angle,
        seed=seed,
        out=out,
        announce=lambda line: typer.echo(f"clusterspy: note: {line}", err=True),
    )
    typer.echo(f"image written to {written}")


@app.command()
def train(
    config: Annotated[Path, typer.Option(help="Training configuration (JSON or YAML).")],
    out: Annotated[Path, typer.Option(help="Output folder: checkpoints, logs, model.onnx, model_card.json.")],
    device: Annotated[str, typer.Option(help="'auto', 'cpu' or 'cuda'.")] = "auto",
    resume: Annotated[bool, typer.Option(help="Resume from the last checkpoint in OUT.")] = True,
) -> None:
    """Train the CNN on simulated images (needs the 'train' extra)."""
    try:
        from clusterspy.model import train as train_model
    except ImportError as exc:  # torch missing
        from clusterspy.errors import MissingDependencyError

        raise MissingDependencyError(getattr(exc, "name", "torch") or "torch", "train", "training") from exc
    _kept_on_interrupt("epochs", out, not_with=None if resume else "--no-resume")  # checkpoint.pt
    written = train_model(config, out, resume=resume, device=device)
    typer.echo(f"model written to {written}")


@app.command()
def fit(
    paths: Annotated[list[Path], typer.Argument(help="Image files (.tif .png .npy .npz .dm3 .dm4 .emd).")],
    element: Annotated[str, typer.Option(help="The metal (fcc: Au, Pt, Pd, Ag, Cu, Pb, ...).")] = "Au",
    pixel_size: PixelSize = None,
    energy: EnergyOption = 200.0,
    semiangle: SemiangleOption = 25.0,
    out: Annotated[Path | None, typer.Option(help="Folder for every cluster's .xyz, .json and .png.")] = None,
    signal: SignalOption = None,
    contrast: ContrastOption = Contrast.auto,
    fmt: Annotated[
        OutputFormat, typer.Option("--format", help="Output format on stdout (json, csv: the fields of "
                                   "--out's .json but the arrays).")
    ] = OutputFormat.table,
) -> None:
    """Fit a 3D atomic model (motif form, size, orientation) to every cluster, by its simulation.

    Prints one line per cluster: isomer, model form, atoms, zone axis, NCC with the data, its
    margin over the best model of another isomer, and the reason when the isomer is unknown.
    """
    from clusterspy.simulation import Microscope
    from clusterspy.workflows import fit_files, format_fits

    records: list[dict] = []
    done = fit_files(paths, element=element, pixel_size_A=pixel_size, out=out,
                     microscope=Microscope(energy_keV=energy, semiangle_mrad=semiangle),
                     signal=_signal_choice(signal), contrast=contrast.value, records=records)
    typer.echo(format_fits(records, fmt.value))
    for file, fits in done:
        for f in fits:
            if f.note:
                typer.echo(f"clusterspy: note: {file} cluster {f.cluster}: {f.note}", err=True)
    if out is not None:
        typer.echo(f"models, figures and JSON written to {out}", err=True)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("clusterspy_demo"),
) -> None:
    """Run the whole pipeline on the built-in example series (well under a minute)."""
    from clusterspy.workflows import run_demo

    _kept_on_interrupt("frames", out, kept=_frames_kept(out))  # resumed as by 'clusterspy series'
    report = run_demo(out)
    typer.echo(f"results: {out / 'results.csv'}")
    typer.echo(f"report:  {report}")


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        from clusterspy import __version__

        typer.echo(__version__)
        raise typer.Exit(0)


def _quiet_warnings() -> Callable[..., None]:
    """Warnings as one line each (``clusterspy: warning: …``, no source line), and tifffile's own
    log of a damaged file left out (ClusterSpy says what it read of it); returns the previous
    ``warnings.showwarning`` (restored when :func:`main` returns)."""
    import logging
    import warnings

    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        typer.echo(f"clusterspy: warning: {' '.join(str(message).split())}", err=True)

    warnings.showwarning = show
    logging.getLogger("tifffile").setLevel(logging.CRITICAL)
    return previous


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``clusterspy`` command; returns the exit code."""
    import warnings

    previous = _quiet_warnings()
    on_term = _terminate_as_interrupt()
    try:
        return _run(argv)
    finally:
        warnings.showwarning = previous
        if on_term is not None:
            import signal

            signal.signal(signal.SIGTERM, on_term)


def _terminate_as_interrupt() -> Any:
    """Make SIGTERM (``kill``, a batch system's time limit) stop a command as Ctrl-C does: its
    workers ended (``clusterspy dataset``'s left computing, orphaned, before), what it finished kept
    and said, exit status 143. Returns the handler it replaced (None off the main thread, where
    Python cannot set one)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum: int, frame: Any) -> None:
        _ON_INTERRUPT["terminated"] = True
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def _run(argv: list[str] | None) -> int:
    """:func:`main` without its warning display: the command, its errors as one line."""
    from clusterspy.errors import ClusterSpyError

    _ON_INTERRUPT["note"] = _ON_INTERRUPT["kept"] = _ON_INTERRUPT["instead"] = None
    _ON_INTERRUPT["terminated"] = False
    try:
        rc = app(args=argv, standalone_mode=False)
        if rc == EXIT_INTERRUPTED:  # typer turns Ctrl-C in a command into Exit(130), returned here
            return _interrupted()
        if isinstance(rc, int) and rc:  # click returns the code of typer.Exit without raising it
            return rc
    except ClusterSpyError as exc:
        typer.echo(f"clusterspy: error: {' '.join(str(exc).split())}", err=True)
        return exc.exit_code
    except typer.Exit as exc:
        return _interrupted() if exc.exit_code == EXIT_INTERRUPTED else exc.exit_code
    except KeyboardInterrupt:  # outside a command (parsing), or a typer that lets it through
        return _interrupted()
    except OSError as exc:
        if exc.errno not in _USER_OS_ERRORS:
            raise
        typer.echo(f"clusterspy: error: {_os_error_message(exc)}", err=True)
        return 2
    except Exception as exc:
        # Usage errors of the (vendored) click parser: show the message, not a traceback.
        if type(exc).__name__ == "Abort":  # click's answer to Ctrl-C (older typer) or to EOF at a prompt
            return _interrupted() if isinstance(exc.__context__, KeyboardInterrupt) else 1
        code = getattr(exc, "exit_code", None)
        if callable(getattr(exc, "format_message", None)) and isinstance(code, int):
            ctx = getattr(exc, "ctx", None)  # one line, as for our own errors
            hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            typer.echo(f"clusterspy: error: {' '.join(exc.format_message().split())}{hint}", err=True)
            return code
        raise
    return 0


#: Exit status of a command stopped by Ctrl-C (128 + SIGINT, as a shell reports it).
EXIT_INTERRUPTED = 130
#: Exit status of a command stopped by SIGTERM (128 + SIGTERM).
EXIT_TERMINATED = 143


def _interrupted() -> int:
    """Print the one line of an interrupted command — with what it keeps and how to continue,
    where its output resumes — and return :data:`EXIT_INTERRUPTED`."""
    note = _ON_INTERRUPT["note"]
    if _ON_INTERRUPT["kept"] is not None and not _ON_INTERRUPT["kept"][0]():
        note = _ON_INTERRUPT["kept"][1]
    elif _ON_INTERRUPT["instead"] is not None:
        note = _ON_INTERRUPT["instead"]() or note
    terminated = bool(_ON_INTERRUPT["terminated"])
    typer.echo(f"clusterspy: {'terminated' if terminated else 'interrupted'}" + (f": {note}" if note else ""),
               err=True)
    return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED


#: errno values of a full disk, a file size limit or missing permissions: the user's to fix.
_USER_OS_ERRORS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def _os_error_message(exc: OSError) -> str:
    """One line for a full disk or a denied write: what failed, where, and what to do."""
    where = f" ({exc.filename})" if exc.filename else ""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return f"{reason}{where}: the disk is full or the file size limit reached; free space or " \
               "give another output folder"
    return f"{reason}{where}: check the permissions or give another output folder"


def _train_extra(module: str, name: str, feature: str):
    """``module.name``, or a one-line :class:`~clusterspy.errors.MissingDependencyError` without 'train'."""
    from importlib import import_module

    try:
        return getattr(import_module(module), name)
    except ImportError as exc:
        from clusterspy.errors import MissingDependencyError

        raise MissingDependencyError(getattr(exc, "name", None) or "torch", "train", feature) from exc


@app.command()
def dataset(
    spec: Annotated[Path, typer.Argument(help="Dataset specification (YAML/JSON), or a training config "
                                              "with 'dataset:'.")],
    out: Annotated[Path, typer.Argument(help="Output folder (.zarr); rerun the same command to resume.")],
    scheduler: Annotated[str | None, typer.Option(
        help="Dask scheduler: 'processes' (default), 'threads', 'synchronous' or tcp://host:port.")] = None,
    workers: Annotated[int | None, typer.Option(help="Local worker processes (default: all cores).")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Generate (or resume) a labelled dataset of simulated crops (needs the 'train' extra)."""
    generate = _train_extra("clusterspy.datasets", "generate", "dataset generation")
    _kept_on_interrupt("chunks", out)  # the finished chunks of the .zarr; a rerun makes the others
    path = generate(spec, out, scheduler=scheduler, num_workers=workers, progress=progress)
    typer.echo(f"dataset complete: {path}")


model_app = typer.Typer(
    help="Finish an exported model: confidence calibration, out-of-distribution statistics.",
    no_args_is_help=True,
)
app.add_typer(model_app, name="model")


def _model_folder(folder: Path) -> Path:
    if not (folder / "model_card.json").is_file():
        from clusterspy.errors import InputFileError

        raise InputFileError(f"{folder} has no model_card.json: give the folder of an exported model "
                             "(model.onnx + model_card.json, as written by `clusterspy train`)")
    return folder


@model_app.command("recalibrate")
def model_recalibrate(
    folder: Annotated[Path, typer.Argument(help="Folder with model.onnx and model_card.json.")],
    tta: Annotated[bool, typer.Option(help="Also try test-time augmentation (8 flips/rotations); "
                                           "kept if more accurate.")] = True,
    prism: Annotated[list[Path] | None, typer.Option(
        help="PRISM calibration dataset (.zarr; repeatable); default: the config's validation set.")] = None,
) -> None:
    """Re-fit the temperature and 'unknown' threshold of an exported model (prints the metrics as JSON)."""
    import json

    recalibrate = _train_extra("clusterspy.model.confidence_calibration", "recalibrate", "recalibration")
    metrics = recalibrate(_model_folder(folder), tta=tta, prism=[str(p) for p in prism] if prism else None)
    typer.echo(json.dumps(metrics, indent=1))


@model_app.command("ood")
def model_ood(
    folder: Annotated[Path, typer.Argument(help="Folder with model.onnx and model_card.json.")],
    spec: Annotated[Path, typer.Option(help="The training set's dataset specification (YAML).")],
    data: Annotated[Path | None, typer.Option(
        help="The training set (.zarr); default: remake its held-out examples from --spec.")] = None,
    n: Annotated[int, typer.Option(help="Held-out examples remade from --spec.")] = 2000,
    quantile: Annotated[float, typer.Option(
        help="Quantile of in-domain distances taken as the out-of-distribution threshold.")] = 0.995,
) -> None:
    """Add the features output, out-of-distribution statistics and domain to a model; seal its card."""
    import json

    finalise = _train_extra("clusterspy.model.ood", "finalise", "out-of-distribution statistics")
    ood = finalise(_model_folder(folder), data, spec, quantile=quantile, n_examples=n)
    typer.echo(json.dumps(ood, indent=1))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
