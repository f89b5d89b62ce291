"""Video ingest: frames decoded/s, frames analysed/s, tracks per minute of video, and the ratio
of tracks to per-frame detections (how much linking saves the index), at several sample rates
run interleaved, on the Hamilton clip and on a longer synthetic video (shots of dev faces with
drift, occlusions and cuts, made by tests/videos.py).

    python benchmarks/video.py [--seconds 60] [--rounds 2] [--out benchmarks/results/video.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from vultus.accuracy.calibration import calibration_for
from vultus.config import Settings
from vultus.pipeline.analyse import FacePipeline
from vultus.pipeline.footage import analyse_video
from vultus.pipeline.tracking import TrackRules
from vultus.pipeline.video import VideoReader

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from videos import Person, Shot, write_video  # noqa: E402

SAMPLE_RATES = (1.0, 0.5, 0.25)  # seconds between analysed frames


def faces_dir() -> Path:
    env = os.environ.get("VULTUS_TEST_FACES")
    path = Path(env) if env else REPO.parent / "shared" / "faces"
    if not (path / "dev" / "labels.csv").is_file():
        sys.exit(f"shared face photos not found at {path}: set VULTUS_TEST_FACES")
    return path


def synthetic(path: Path, faces: Path, seconds: float, seed: int = 7) -> int:
    """Shots of 5-12 s, each with one to three of the dlib crops' people, drifting; some with
    a 0.6 s occlusion of the first person. Returns how many appearances (a person in a shot)
    it holds: what a perfect tracker finds."""
    rng = np.random.default_rng(seed)
    people = sorted(p for p in (faces / "dev" / "images").glob("John_*/*.jpg"))
    shots, total = [], 0.0
    while total < seconds:
        length = float(min(round(rng.uniform(5, 12)), seconds - total))
        chosen = rng.choice(len(people), size=int(rng.integers(1, 4)), replace=False)
        cast = [
            Person(
                people[i], 20 + 150 * k, int(rng.integers(60, 140)), 150, float(rng.uniform(-8, 8))
            )
            for k, i in enumerate(chosen)
        ]
        hidden = [(length / 3, length / 3 + 0.6)] if rng.random() < 0.5 else []
        background = tuple(int(v) for v in rng.integers(20, 160, size=3))
        shots.append(Shot(length, cast, background=background, hidden=hidden))  # type: ignore[arg-type]
        total += length
    write_video(path, shots, fps=25)
    return sum(len(shot.people) for shot in shots)


def decode_rate(path: Path) -> dict[str, float]:
    """Every frame decoded and checked for a cut, none analysed."""
    started = time.perf_counter()
    with VideoReader(path) as video:
        for _ in video.frames(every_s=1e9):
            pass
        frames = video.frames_decoded
    seconds = time.perf_counter() - started
    return {"frames": frames, "seconds": seconds, "frames_per_s": frames / seconds}


def analyse_rate(
    pipeline: FacePipeline, path: Path, rules: TrackRules, every_s: float
) -> dict[str, Any]:
    started = time.perf_counter()
    video = analyse_video(pipeline, path, rules=rules, every_s=every_s, cut_threshold=20.0)
    seconds = time.perf_counter() - started
    length = video.info.duration_s or video.seconds
    indexed = sum(t.fused() is not None for t in video.tracks)
    return {
        "every_s": every_s,
        "seconds": seconds,
        "video_s": length,
        "realtime": length / seconds,
        "frames_decoded": video.frames_decoded,
        "frames_analysed": video.frames_analysed,
        "analysed_per_s": video.frames_analysed / seconds,
        "decoded_per_s": video.frames_decoded / seconds,
        "detections": video.detections,
        "tracks": len(video.tracks),
        "tracks_indexed": indexed,
        "tracks_per_min": len(video.tracks) / (length / 60),
        "tracks_per_detection": len(video.tracks) / max(1, video.detections),
        "cuts": video.cuts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="synthetic video length")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/video.json")
    args = parser.parse_args()
    faces = faces_dir()
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="vultus-bench-video-")))
    pipeline = FacePipeline(settings)
    cal = calibration_for(pipeline.model_id, settings.data_dir)
    rules = TrackRules(float(cal.threshold_for(1e-2)), float(cal.threshold_for(1e-3)))
    videos: dict[str, Path] = {}
    clip = faces / "video" / "short_hamilton_clip.mp4"
    if clip.exists():
        videos["hamilton clip (640x360, 10 s)"] = clip
    made = Path(settings.data_dir) / "synthetic.mp4"
    started = time.perf_counter()
    appearances = synthetic(made, faces, args.seconds)
    print(
        f"synthetic video: {args.seconds:.0f} s encoded in {time.perf_counter() - started:.1f} s; "
        f"{appearances} appearances (a person in a shot): a perfect tracker's track count"
    )
    videos[f"synthetic (480x360, {args.seconds:.0f} s, 25 fps)"] = made
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        for name, path in videos.items():
            decoded = decode_rate(path)
            rows.append({"video": name, "round": round_, "variant": "decode only", **decoded})
            for every_s in SAMPLE_RATES:  # interleaved: each round runs every variant
                result = analyse_rate(pipeline, path, rules, every_s)
                rows.append(
                    {"video": name, "round": round_, "variant": f"every {every_s} s", **result}
                )
    load_after = os.getloadavg()

    table = Table(title="Video ingest (median over rounds)")
    for col in (
        "video",
        "variant",
        "decoded/s",
        "analysed/s",
        "× real time",
        "detections",
        "tracks",
        "tracks/min",
        "tracks per detection",
    ):
        table.add_column(col, justify="left" if col in ("video", "variant") else "right")
    summary = []
    for name in videos:
        for variant in ["decode only", *(f"every {s} s" for s in SAMPLE_RATES)]:
            group = [r for r in rows if r["video"] == name and r["variant"] == variant]
            med = {
                k: float(np.median([r[k] for r in group]))
                for k in group[0]
                if isinstance(group[0][k], int | float) and k != "round"
            }
            summary.append({"video": name, "variant": variant, **med})
            if variant == "decode only":
                table.add_row(name, variant, f"{med['frames_per_s']:,.0f}", "", "", "", "", "", "")
            else:
                table.add_row(
                    name,
                    variant,
                    f"{med['decoded_per_s']:,.0f}",
                    f"{med['analysed_per_s']:.1f}",
                    f"{med['realtime']:.2f}",
                    f"{med['detections']:.0f}",
                    f"{med['tracks']:.0f}",
                    f"{med['tracks_per_min']:.1f}",
                    f"{med['tracks_per_detection']:.3f}",
                )
    Console().print(table)
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "when": dt.datetime.now(dt.UTC).isoformat(),
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                "load_average": {"before": load_before, "after": load_after},
                "synthetic_appearances": appearances,
                "model": pipeline.model_id,
                "detector": settings.detector,
                "rules": rules.__dict__,
                "summary": summary,
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
