"""The default's pixel-size search: a label ``isomernet-v2`` cannot give at the pixel size told, found
within the ±15 % the domain promises and checked by the second opinion (``predict.search_pixel_size``)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from clusterspy import predict
from clusterspy.image import Image
from clusterspy.isomers import CLASSES
from clusterspy.predict import (
    PIXEL_SIZE_SEARCH,
    ModelsBySize,
    classify,
    load_model,
    search_context,
    search_pixel_size,
)

EXAMPLE = Path(__file__).parents[1] / "src" / "clusterspy" / "data" / "example_series.npz"
#: Frames of the built-in example (0.3 Å/px) that the default, told 0.345 Å/px (15 % too large),
#: cannot label at that pixel size (v2 low_confidence: 1, 2; the second opinion disagrees: 16) and
#: labels right at 0.345 / 1.15 = 0.3 Å/px (measured).
TOLD_TOO_LARGE = (1, 2, 16)


def _example(frames: tuple[int, ...]) -> tuple[list[np.ndarray], list[str]]:
    with np.load(EXAMPLE) as ex:
        return ([ex["frames"][i].astype(np.float32) for i in frames],
                [str(ex["true_labels"][i]) for i in frames])


def _without_search() -> ModelsBySize:
    default = load_model()
    return ModelsBySize(default.models, second_opinion=default.second_opinion)


def test_the_default_searches_15_percent_each_way_and_records_it():
    default = load_model()
    assert PIXEL_SIZE_SEARCH == pytest.approx((1 / 1.15, 1.15))
    assert default.pixel_size_search == PIXEL_SIZE_SEARCH
    summary = predict.model_summary(default)
    assert summary["pixel_size_search"]["factors"] == pytest.approx([1 / 1.15, 1.15], abs=1e-6)
    assert "second opinion" in summary["pixel_size_search"]["rule"]
    assert "pixel_size_search" not in predict.model_summary(_without_search())


def test_a_label_found_at_a_searched_pixel_size_is_right_and_says_its_factor():
    frames, truth = _example(TOLD_TOO_LARGE)
    for img, true in zip(frames, truth, strict=True):
        (before,) = classify(img, pixel_size_A=0.345, model=_without_search())
        assert before.label == "unknown" and before.reason in ("low_confidence", "models_disagree")
        assert before.pixel_size_factor == 1.0
        (found,) = classify(img, pixel_size_A=0.345)
        assert (found.label, found.reason) == (true, None)
        assert found.pixel_size_factor == pytest.approx(1 / 1.15)
        assert found.confidence >= load_model().primary.unknown_threshold
        assert found.confidence == pytest.approx(max(found.probabilities.values()))
        assert found.diameter_nm == pytest.approx(before.diameter_nm)  # the user's calibration, kept
        d = found.to_dict()
        assert d["pixel_size_factor"] == pytest.approx(1 / 1.15, abs=1e-6)
        (right,) = classify(img, pixel_size_A=0.3)  # at the true pixel size nothing is searched
        assert (right.label, right.pixel_size_factor) == (true, 1.0)


def test_one_model_alone_never_searches():
    (frame,), _ = _example(TOLD_TOO_LARGE[:1])
    (r,) = classify(frame, pixel_size_A=0.345, model="isomernet-v2")
    assert r.label == "unknown" and r.pixel_size_factor == 1.0


def test_explain_redraws_the_crop_the_label_was_found_in():
    frames, _ = _example(TOLD_TOO_LARGE[:1])
    img = Image(frames[0], 0.345)
    (r,) = classify(img)
    assert r.pixel_size_factor != 1.0
    m, crop, step_A = predict.judged_crop(img, r, load_model())
    assert m is load_model().primary and step_A == pytest.approx(m.pixel_size_A)
    again = m.predict_crops(crop[None])[0]
    assert again == pytest.approx([r.probabilities[c] for c in CLASSES], abs=1e-5)


def test_the_csv_and_json_carry_the_factor(tmp_path: Path):
    from clusterspy.workflows import RESULT_COLUMNS, format_results

    frames, _ = _example(TOLD_TOO_LARGE[:1])
    results = classify(frames[0], pixel_size_A=0.345)
    assert "pixel_size_factor" in RESULT_COLUMNS and "pixel_size_factor" in predict.RESULT_COLUMNS
    header, row = format_results(results, "csv").splitlines()[:2]
    assert float(dict(zip(header.split(","), row.split(","), strict=True))["pixel_size_factor"]) == (
        pytest.approx(1 / 1.15, abs=1e-5))
    assert json.loads(format_results(results, "json"))[0]["pixel_size_factor"] == pytest.approx(1 / 1.15,
                                                                                                abs=1e-5)
    assert results.table()["pixel_size_factor"] == [pytest.approx(1 / 1.15)]


def test_the_search_reads_only_its_context():
    """What the series keeps of a frame (:func:`search_context`) gives the crops and checks the whole
    frame gives, at every factor, for each model, also for a cluster near the frame's edge."""
    from clusterspy.detection import detect_clusters
    from clusterspy.domain import particle_diameter_A, resolution_reason

    (frame,), _ = _example((1,))
    default = load_model()
    models = [default.primary, default.second_opinion]
    img = Image(frame, 0.345)
    (d,) = detect_clusters(img, min_diameter_A=8.0, max_diameter_A=60.0, exclude_border=False)
    shifted = Image(np.roll(frame, (int(-d.y_px) + 40, int(-d.x_px) + 45), axis=(0, 1)), 0.345)
    (d2,) = detect_clusters(shifted, min_diameter_A=8.0, max_diameter_A=60.0, exclude_border=False)
    for image, det in ((img, d), (shifted, d2)):
        D = particle_diameter_A(det.diameter_A)
        ctx, moved = search_context(image, det, D, models, PIXEL_SIZE_SEARCH)
        assert ctx.data.size < image.data.size and ctx.pixel_size_A == image.pixel_size_A
        for f in (1.0, *PIXEL_SIZE_SEARCH):
            whole, part = predict.scaled_image(image, f), predict.scaled_image(ctx, f)
            for m in models:
                np.testing.assert_array_equal(predict._model_crops(whole, [det], [D * f], m),
                                              predict._model_crops(part, [moved], [D * f], m))
            assert resolution_reason(whole, det.x_px, det.y_px, D * f) == resolution_reason(
                part, moved.x_px, moved.y_px, D * f)


def test_a_series_finds_the_labels_classify_finds(tmp_path: Path):
    from clusterspy.series import classify_series
    from clusterspy.series.frames import read_frames_csv

    frames, truth = _example(TOLD_TOO_LARGE)
    classify_series([Image(f, 0.345) for f in frames], out=tmp_path / "s", n_boot=5)
    rows = read_frames_csv(tmp_path / "s" / "frames.csv")
    assert list(rows["label"]) == truth and set(rows["reason"]) == {""}
    assert rows["pixel_size_factor"] == pytest.approx([1 / 1.15] * 3, abs=1e-5)
    for i, f in enumerate(frames):
        (r,) = classify(f, pixel_size_A=0.345)
        assert rows["confidence"][i] == pytest.approx(r.confidence, abs=1e-5)
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["model"]["pixel_size_search"]["factors"] == pytest.approx([1 / 1.15, 1.15], abs=1e-6)
    (warning,) = [w for w in summary["warnings"] if "pixel size given times" in w]
    assert "3 of its 3 labels were found" in warning and "(3 at × 0.87;" in warning  # which way, too


# ---------------------------------------------------------------- the rule, with stand-in models
class _Told:
    """A stand-in network whose probabilities depend only on the pixel size its crop was cut at:
    ``table[round(pixel size told, 3)]`` (the crop holds that number)."""

    def __init__(self, table: dict[float, list[float]], threshold: float = 0.9) -> None:
        self.table = {k: np.asarray(v, float) for k, v in table.items()}
        self.card = SimpleNamespace(domain={"diameter_nm": [1.0, 4.0], "image_pixel_size_A": [0.1, 1.3]})
        self.unknown_threshold, self.ood_threshold, self.crop_px = threshold, None, 8

    def _p(self, crops: np.ndarray) -> np.ndarray:
        return np.stack([self.table[round(float(c.flat[0]), 3)] for c in crops])

    def infer(self, crops: np.ndarray) -> tuple[np.ndarray, None]:
        return self._p(crops), None

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        return self._p(crops)


@pytest.fixture
def told_crops(monkeypatch):
    """Crops that hold the pixel size they were cut at; every lattice resolved."""
    monkeypatch.setattr(predict, "_model_crops", lambda image, dets, diam, model: np.full(
        (len(dets), 2, 2), float(image.pixel_size_A)))
    monkeypatch.setattr("clusterspy.domain.resolution_reason", lambda *a, **k: None)


ICO, DEC, FCC, AMO = np.eye(4) * 0.96 + 0.01
LOW = [0.4, 0.3, 0.2, 0.1]
DET = [SimpleNamespace(x_px=0.0, y_px=0.0)]
UNSURE = [("unknown", 0.4, dict(zip(CLASSES, LOW, strict=True)), "low_confidence", None)]


def _search(first, second, verdicts=UNSURE, diam=(20.0,)):
    return search_pixel_size(first, second, Image(np.zeros((4, 4)), 1.0), DET, list(diam), verdicts,
                             (0.8, 1.25))


def test_the_most_confident_label_the_second_opinion_shares_stands(told_crops):
    first = _Told({0.8: [0.01, 0.96, 0.02, 0.01], 1.0: LOW, 1.25: FCC})  # fcc (0.97) the more confident
    second = _Told({0.8: DEC, 1.0: DEC, 1.25: DEC})  # but the second opinion sees a decahedron
    (v,), (f,) = _search(first, second)
    assert (v[0], v[3], f) == ("decahedral", None, 0.8)
    assert v[1] == pytest.approx(0.96) and v[1] == pytest.approx(max(v[2].values()))
    both = _Told({0.8: FCC, 1.0: FCC, 1.25: FCC})  # where both pixel sizes are shared, the surer
    (v,), (f,) = _search(_Told({0.8: [0.01, 0.02, 0.96, 0.01], 1.0: LOW, 1.25: FCC}), both)
    assert (v[0], f) == ("fcc", 1.25)


def test_a_label_found_elsewhere_needs_more_confidence_than_one_at_the_pixel_size_told(told_crops):
    assert predict.SEARCH_CONFIDENCE_MIN > load_model().primary.unknown_threshold
    second = _Told({0.8: DEC, 1.0: DEC, 1.25: DEC})
    sure_enough_here = [0.02, 0.95, 0.02, 0.01]  # above the stand-in's own threshold (0.9)
    (v,), (f,) = _search(_Told({0.8: sure_enough_here, 1.0: LOW, 1.25: LOW}), second)
    assert v == UNSURE[0] and f == 1.0


def test_no_label_without_the_second_opinion_at_the_pixel_size_told(told_crops):
    first = _Told({0.8: DEC, 1.0: LOW, 1.25: LOW})
    second = _Told({0.8: DEC, 1.0: FCC, 1.25: DEC})  # at the pixel size told it sees fcc
    (v,), (f,) = _search(first, second)
    assert v == UNSURE[0] and f == 1.0


def test_nothing_is_searched_past_the_first_models_sizes_or_for_other_reasons(told_crops):
    first = _Told({0.8: DEC, 1.0: LOW, 1.25: DEC})
    second = _Told({0.8: DEC, 1.0: DEC, 1.25: DEC})
    (v,), (f,) = _search(first, second, diam=(38.0,))  # 3.8 nm: × 1.25 is past 4 nm, × 0.8 not
    assert (v[0], f) == ("decahedral", 0.8)
    (v,), (f,) = _search(first, second, diam=(48.0,))  # × 0.8 = 3.84 nm: still in range
    assert (v[0], f) == ("decahedral", 0.8)
    (v,), (f,) = _search(first, second, diam=(52.0,))  # 5.2 / 6.5 / 4.16 nm: none in range
    assert f == 1.0 and v == UNSURE[0]
    ood = [(*UNSURE[0][:3], "out_of_distribution", 20.0)]
    (v,), (f,) = _search(first, second, verdicts=ood)
    assert v == ood[0] and f == 1.0
    stands = [("icosahedral", 0.99, dict(zip(CLASSES, ICO, strict=True)), None, None)]
    assert _search(first, second, verdicts=stands) == (stands, [1.0])


def test_a_label_that_would_not_stand_there_is_not_taken(told_crops):
    first = _Told({0.8: [0.5, 0.5, 0.0, 0.0], 1.0: LOW, 1.25: LOW})  # below the threshold there too
    second = _Told({0.8: ICO, 1.0: ICO, 1.25: ICO})
    (v,), (f,) = _search(first, second)
    assert v == UNSURE[0] and f == 1.0


def test_older_frames_csv_without_the_factor_still_reads(tmp_path: Path):
    from clusterspy.series.frames import FRAME_COLUMNS, read_frames_csv

    assert FRAME_COLUMNS[-1] == "pixel_size_factor"
    old = tmp_path / "frames.csv"
    header = ",".join(FRAME_COLUMNS[:-1])
    row = ["0", "", "0", "1", "2", "fcc", "", "0.99", "0", "0", "0.99", "0.01", "2", "", "ok", "", "0", "m"]
    assert len(row) == len(FRAME_COLUMNS) - 1
    old.write_text(header + "\n" + ",".join(row) + "\n")
    t = read_frames_csv(old)
    assert list(t["label"]) == ["fcc"] and np.isnan(t["pixel_size_factor"][0])


def test_the_table_and_the_note_say_where_a_label_was_found():
    from clusterspy.cli import _searched_notes
    from clusterspy.workflows import format_results

    frames, _ = _example(TOLD_TOO_LARGE[:2])
    results = [*classify(frames[0], pixel_size_A=0.345), *classify(frames[1], pixel_size_A=0.345, frame=1)]
    table = format_results(results, "table").splitlines()
    assert all("px×0.87" in line for line in table[2:])
    (note,) = _searched_notes(results)
    assert note.startswith("2 of the 2 labels were found only with the pixel size given times 0.87 or 1.15 "
                           "(2 at × 0.87;")
    (one,) = _searched_notes(results[:1])
    assert one.startswith("the label was found only") and "label it at" in one
    assert _searched_notes(classify(frames[0], pixel_size_A=0.3)) == []


def test_a_cluster_whose_fringes_look_too_fine_gets_a_note_saying_which_way():
    from clusterspy.cli import _scale_notes, _searched_notes, _unresolved_notes
    from clusterspy.predict import ClusterResult

    def result(k: int, reason: str | None, factor: float = 1.0) -> ClusterResult:
        return ClusterResult(file="f", frame=0, cluster=k, x_px=1.0, y_px=1.0, confidence=None,
                             label="fcc" if reason is None else "unknown", reason=reason,
                             pixel_size_factor=factor)

    (note,) = _scale_notes([result(0, "scale_mismatch"), result(1, None), result(2, "scale_mismatch")])
    assert note.startswith("2 clusters scale_mismatch:") and "likely too small" in note and "15 %" in note
    assert _scale_notes([result(0, None), result(1, "low_confidence")]) == []
    assert "binned image whose calibration was not updated" in note  # binning makes the value too small
    too_large = [result(0, "pixel_size_too_large"), result(1, "scale_mismatch")]
    fine, coarse = _scale_notes(too_large)  # one line per direction
    assert fine.startswith("1 cluster scale_mismatch:")
    assert coarse.startswith("1 cluster pixel_size_too_large:") and "too large" in coarse
    assert "too small" not in coarse and _scale_notes(too_large[:1]) == [coarse]
    assert "by hand" in note and "by hand" in coarse  # --calibrate cannot measure a 1.5–3× error
    # not_resolved before inference (no confidence) had no note: now it names a wrong pixel size too
    (unresolved,) = _unresolved_notes([result(0, "not_resolved"), result(1, None)])
    assert unresolved.startswith("1 cluster not_resolved:") and "pixel size told wrong" in unresolved
    seen = ClusterResult(file="f", frame=0, cluster=0, x_px=1.0, y_px=1.0, confidence=0.9, label="unknown",
                         reason="not_resolved", pixel_size_factor=1.0)
    assert _unresolved_notes([seen]) == []  # the network saw it: _no_lattice_notes speaks of it
    (one,) = _searched_notes([result(0, None, 1 / 1.15), result(1, None)])
    assert one.startswith("1 of the 2 labels was found") and "(1 at × 0.87;" in one


def test_no_pixel_size_is_tried_past_the_first_models_pixel_sizes(told_crops):
    """Told 1 Å/px by a model that judges images up to 1.1 Å/px, × 1.25 (1.25 Å/px) is not tried:
    a label found there would be one the model was never trained to see."""
    first = _Told({0.8: LOW, 1.0: LOW, 1.25: DEC})
    second = _Told({0.8: DEC, 1.0: DEC, 1.25: DEC})
    first.card.domain["image_pixel_size_A"] = [0.1, 1.1]
    (v,), (f,) = _search(first, second)
    assert v == UNSURE[0] and f == 1.0
    first.card.domain["image_pixel_size_A"] = [0.1, 1.3]
    (v,), (f,) = _search(first, second)
    assert (v[0], f) == ("decahedral", 1.25)
