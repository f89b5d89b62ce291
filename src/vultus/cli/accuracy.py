"""`vultus calibrate` and `vultus eval`: measure the model on labelled photos."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from vultus.cli.common import console, fail, progress, state
from vultus.config import Settings

if TYPE_CHECKING:
    from vultus.accuracy.datasets import LabelledTemplates

MODEL_HELP = (
    'The face model to measure: "dlib" (mirror-averaged), "dlib-plain", or a model pack '
    "(default: the model setting)."
)
CNN_HELP = (
    "Where HOG finds no face, try dlib's MMOD CNN (default: the detect_cnn_fallback setting). "
    "On lfw-a it finds a face in every photo HOG misses."
)


def _templates(
    labels: Path,
    embeddings: Path | None,
    save: Path | None,
    model: str | None,
    cnn_fallback: bool | None = None,
) -> LabelledTemplates:
    from vultus.accuracy.datasets import LabelledTemplates, embed_labelled

    if embeddings is not None:
        return LabelledTemplates.load(embeddings)
    settings = Settings.load(
        state["data_dir"],
        engine=state.get("engine"),
        model=model,
        detect_cnn_fallback=cnn_fallback,
    )
    with progress("embedding photos", unit="photos") as update:
        data = embed_labelled(labels, settings, on_progress=update)
    if data.failures:
        console.print(f"[yellow]{len(data.failures)} photo(s) had no usable face[/]")
    if save is not None:
        data.save(save)
    return data


def calibrate(
    labels: Path = typer.Argument(..., exists=True, help="labels.csv: path,identity"),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Where to write the table (default: DATA_DIR/calibration_<model id>.json, "
        "where searches read it).",
    ),
    embeddings: Path | None = typer.Option(
        None, "--embeddings", help="Reuse templates saved by --save-embeddings (a prefix)."
    ),
    save_embeddings: Path | None = typer.Option(None, "--save-embeddings"),
    model: str | None = typer.Option(None, "--model", help=MODEL_HELP),
    detect_cnn_fallback: bool | None = typer.Option(
        None, "--detect-cnn-fallback/--no-detect-cnn-fallback", help=CNN_HELP
    ),
) -> None:
    """Fit a distance → false-match-rate table on labelled photos and install it in the data
    directory, where searches, verification and rights requests of that model read it.

    Example: vultus calibrate ../shared/faces/lfw-a/labels.csv
    """
    from vultus.accuracy.calibration import calibration_path, fit_calibration

    data = _templates(labels, embeddings, save_embeddings, model, detect_cnn_fallback)
    if len(set(data.labels)) < 2:
        raise fail("calibration needs photos of at least two people")
    cal = fit_calibration(data.templates, data.labels, model_id=data.model_id, source=str(labels))
    installed = calibration_path(Settings.load(state["data_dir"]).data_dir, data.model_id)
    target = out if out is not None else installed
    target.parent.mkdir(parents=True, exist_ok=True)
    cal.save(target)
    console.print(
        f"[green]✓[/] {target}: {cal.n_genuine:,} genuine and {cal.n_impostor:,} impostor pairs; "
        f"distance at FMR 1e-3: {cal.threshold_for(1e-3):.3f}, at 1e-4: "
        f"{cal.threshold_for(1e-4):.3f}"
    )
    if target.resolve() == installed.resolve():
        console.print(
            f"in effect for model {data.model_id} in {installed.parent} (a running server "
            "reads it when restarted)"
        )
    else:
        console.print(
            f"[yellow]![/] not in effect: searches of model {data.model_id} read {installed}; "
            "copy it there to use it"
        )


def eval_(
    labels: Path = typer.Argument(..., exists=True, help="labels.csv: path,identity"),
    pairs: Path | None = typer.Option(None, "--pairs", help="pairs.csv: path1,path2,same,fold"),
    json_out: Path | None = typer.Option(None, "--json", help="Write the report as JSON here."),
    embeddings: Path | None = typer.Option(None, "--embeddings"),
    save_embeddings: Path | None = typer.Option(
        None, "--save-embeddings", help="Save templates under this prefix (.npy + .json)."
    ),
    model: str | None = typer.Option(None, "--model", help=MODEL_HELP),
    detect_cnn_fallback: bool | None = typer.Option(
        None, "--detect-cnn-fallback/--no-detect-cnn-fallback", help=CNN_HELP
    ),
) -> None:
    """Measure accuracy: 10-fold pair accuracy, TAR at FAR 1e-2..1e-4, rank-1 and rank-5, rank-1
    with fused multi-photo gallery templates, and error rates by detector confidence. Photos
    where no face is found stay in the protocol as misses, and the JSON lists them.

    Example: vultus eval lfw-a/labels.csv --pairs lfw-a/pairs.csv --model dlib-plain --json e.json
    """
    from vultus.accuracy.datasets import read_labels, read_pairs
    from vultus.accuracy.evaluation import evaluate, print_report

    data = _templates(labels, embeddings, save_embeddings, model, detect_cnn_fallback)
    identity = dict(read_labels(labels))
    lost = [path for path, _ in data.failures]
    pair_idx = None
    pairs_lost: list[tuple[bool, int]] = []
    if pairs is not None:
        where = {p: i for i, p in enumerate(data.paths)}
        rows = read_pairs(pairs)
        pair_idx = [
            (where[a], where[b], same, fold)
            for a, b, same, fold in rows
            if a in where and b in where
        ]
        pairs_lost = [(same, fold) for a, b, same, fold in rows if a not in where or b not in where]
        if pairs_lost:
            console.print(
                f"[yellow]{len(pairs_lost)} pair(s) lack a face: counted as rejections[/]"
            )
    report = evaluate(
        data.templates,
        data.labels,
        pairs=pair_idx,
        quality=data.det_scores if len(data.det_scores) == len(data.labels) else None,
        pairs_without_face=pairs_lost,
        labels_without_face=[identity[p] for p in lost if p in identity],
    )
    print_report(report, console=console)
    if json_out is not None:
        payload = report.to_json()
        payload["model_id"] = data.model_id
        payload["n_photos"] = len(data.paths) + len(data.failures)
        payload["photos_without_face"] = [
            {"path": path, "identity": identity.get(path), "reason": reason}
            for path, reason in data.failures
        ]
        json_out.write_text(json.dumps(payload, indent=2))
        console.print(f"[green]✓[/] wrote {json_out}")


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate)
    app.command("eval")(eval_)
