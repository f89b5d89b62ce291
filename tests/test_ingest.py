"""Given folders of photos, good and bad, when I ingest them, then the catalog holds exactly
the usable faces, bad files are reported and nothing half-written remains."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import PURPOSE, add_test_source
from vultus.engine import Engine
from vultus.engine.jobs import JobQueue
from vultus.errors import ConsentRequiredError, ModelMismatchError, SourceError


def test_multi_face_photos_give_several_faces_and_dogs_none(
    empty_engine: Engine, faces_dir: Path
) -> None:
    extra = faces_dir / "dev" / "extra"
    summary = empty_engine.add([extra], source="test")
    assert summary.errors == []
    by_name = {}
    with empty_engine.catalog.session() as s:
        from vultus.catalog.models import Face
        from vultus.catalog.models import Image as ImageRow

        for image in s.query(ImageRow).all():
            by_name[Path(image.path).name] = (
                image.status,
                s.query(Face).filter(Face.image_id == image.id).count(),
            )
    assert by_name["dogs.jpg"] == ("no_faces", 0)
    assert by_name["two_people.jpg"][1] == 2
    assert by_name["kit_with_rose.jpg"][1] == 2
    assert by_name["selfie-many-people.jpg"][1] >= 4
    assert summary.images_no_face >= 1


def _bad_files(folder: Path) -> dict[str, str]:
    """Bad inputs and the error code each must give."""
    folder.mkdir()
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("this is not an image")
    good = folder / "good.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(good)
    data = good.read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    good.unlink()
    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(folder / "big.png")
    return {
        "empty.jpg": "empty_file",
        "notes.png": "not_an_image",
        "truncated.png": "corrupt_image",
        "big.png": "image_too_large",
    }


def test_bad_inputs_give_clear_errors_and_write_nothing(tmp_path: Path) -> None:
    expected = _bad_files(tmp_path / "bad")
    with Engine.open(tmp_path / "data", workers=1, max_pixels=100_000) as engine:
        add_test_source(engine)
        summary = engine.add([tmp_path / "bad"], source="test")
        codes = {Path(p).name: code for p, code, _ in summary.errors}
        assert codes == expected
        for path, _, message in summary.errors:
            assert Path(path).name in message
        counts = engine.catalog.counts()
        assert counts["images"] == 0 and counts["faces_indexed"] == 0
        run, errors = engine.catalog.get_run(summary.run_id)
        assert run.errors == len(expected) and len(errors) == len(expected)


def test_fifos_and_symlink_loops_are_skipped_with_a_reason(
    empty_engine: Engine, gallery_split: tuple[list[Path], list], tmp_path: Path
) -> None:
    import threading

    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(gallery_split[0][0], folder / "good.jpg")
    os.mkfifo(folder / "pipe.jpg")  # reading it would wait for a writer forever
    os.symlink(folder / "loop-b.jpg", folder / "loop-a.jpg")
    os.symlink(folder / "loop-a.jpg", folder / "loop-b.jpg")
    os.symlink(folder / "gone.jpg", folder / "dangling.jpg")
    done: dict[str, object] = {}

    def ingest() -> None:
        try:
            done["summary"] = empty_engine.add([folder, folder / "loop-a.jpg"], source="test")
        except BaseException as exc:  # noqa: BLE001 - reported below
            done["error"] = exc

    worker = threading.Thread(target=ingest, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the ingest hung"
    assert "error" not in done, done.get("error")
    summary = done["summary"]
    assert summary.images_added == 1  # the good photo went in
    codes = {Path(p).name: (code, message) for p, code, message in summary.errors}
    assert codes["pipe.jpg"][0] == "not_a_file" and "FIFO" in codes["pipe.jpg"][1]
    assert codes["loop-a.jpg"][0] == "symlink_loop" and "skipped" in codes["loop-a.jpg"][1]
    assert codes["loop-b.jpg"][0] == "symlink_loop"
    assert codes["dangling.jpg"][0] == "file_not_found"


def test_nothing_enters_without_a_lawful_source(empty_engine: Engine, faces_dir: Path) -> None:
    with pytest.raises(SourceError, match="no source named"):
        empty_engine.add([faces_dir / "dev" / "extra"], source="nowhere")
    with pytest.raises(SourceError, match="Art. 6"):
        empty_engine.add_source(
            "x",
            lawful_basis_code="because",
            special_condition="explicit_consent",
            purpose="p",
            retention_days=1,
        )
    with pytest.raises(SourceError, match="needs the law"):
        empty_engine.add_source(
            "y",
            lawful_basis_code="public_task",
            special_condition="substantial_public_interest",
            purpose="p",
            retention_days=1,
        )


def test_ingest_is_idempotent(empty_engine: Engine, gallery_split: tuple[list[Path], list]) -> None:
    photos = gallery_split[0][:5]
    first = empty_engine.add(photos, source="test")
    again = empty_engine.add(photos, source="test")
    assert first.images_added == 5
    assert again.images_added == 0 and again.images_duplicate == 5
    assert empty_engine.catalog.counts()["images"] == 5


def _noise(path: Path, seed: int, fmt: str = "JPEG") -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(path, fmt)
    return path


def _frames(path: Path, n: int, fmt: str) -> Path:
    """An animated image (GIF, APNG, WebP) or a multi-page TIFF of `n` frames."""
    frames = [Image.new("RGB", (48, 48), (40 * i, 90, 160)) for i in range(n)]
    frames[0].save(path, fmt, save_all=True, append_images=frames[1:])
    return path


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()
    }


def test_a_dry_run_counts_from_the_files_alone_loads_no_model_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    held = _noise(folder / "held.png", 1, "PNG")
    new = _noise(folder / "new.jpg", 2)
    shutil.copy(new, folder / "new copy.jpg")  # the same photo twice: read once
    _frames(folder / "animated.gif", 3, "GIF")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("not a photo")
    Image.new("1", (50_000, 1_100)).save(folder / "wide.png")  # 55 MP: over the 50 MP limit
    os.mkfifo(folder / "pipe.jpg")
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    data = tmp_path / "data"
    with Engine.open(data, workers=1) as engine:
        add_test_source(engine)
        engine.add([held], source="test")

    with Engine.open(data, workers=1) as engine:

        def no_model(*args: object, **kwargs: object) -> None:
            raise AssertionError("a dry run loaded the face model")

        monkeypatch.setattr("vultus.pipeline.analyse.FacePipeline.__init__", no_model)
        before = _files(data)
        dry = engine.add([folder], source="test", dry_run=True)
        assert _files(data) == before  # nothing written: catalog, index, audit log, runs
    monkeypatch.undo()
    assert dry.dry_run and dry.run_id is None and dry.files_seen == 9
    assert (dry.images_added, dry.images_duplicate) == (2, 2)  # new.jpg, animated.gif
    assert dry.multi_frame == [(str(folder / "animated.gif"), 3)]
    skipped = {Path(path).name: code for path, code, _ in dry.errors}
    assert skipped == {
        "empty.jpg": "empty_file",
        "notes.jpg": "not_an_image",
        "wide.png": "image_too_large",
        "pipe.jpg": "not_a_file",
        "loop.jpg": "symlink_loop",
    }

    # The real run finds what the dry run said it would.
    with Engine.open(data, workers=1) as engine:
        real = engine.add([folder], source="test")
    assert (real.images_added, real.images_duplicate) == (2, 2)
    assert {Path(path).name: code for path, code, _ in real.errors} == skipped


def test_animated_and_multi_page_images_are_read_as_their_first_frame_and_say_so(
    empty_engine: Engine, tmp_path: Path
) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    many = [
        _frames(folder / "animated.gif", 3, "GIF"),
        _frames(folder / "scan.tif", 4, "TIFF"),
        _frames(folder / "animated.png", 2, "PNG"),
        _frames(folder / "animated.webp", 5, "WEBP"),
    ]
    _frames(folder / "still.png", 1, "PNG")
    summary = empty_engine.add([folder], source="test")
    assert summary.images_added == 5 and summary.errors == []
    assert sorted(summary.multi_frame) == sorted(
        (str(p), n) for p, n in zip(many, [3, 4, 2, 5], strict=True)
    )
    entry = empty_engine.audit.entries(action="ingest")[-1].details
    assert sorted(entry["multi_frame_photos"]) == sorted(map(str, many))
    assert entry["multi_frame_photos_total"] == 4
    # An upload says so by the name it was sent with.
    gif = _frames(tmp_path / "wave.gif", 6, "GIF")
    uploaded, _ = empty_engine.upload(gif.read_bytes(), "wave.gif", source="test")
    assert uploaded.multi_frame == [("wave.gif", 6)]


def test_the_catalog_refuses_to_mix_models(empty_engine: Engine) -> None:
    empty_engine.catalog.set_meta("model_id", "some-other-model")
    with pytest.raises(ModelMismatchError, match="some-other-model"):
        empty_engine.catalog.check_model("dlib-resnet-v1")


def _snapshot(data_dir: Path) -> tuple[list[tuple], list[tuple]]:
    """The catalog's content, with templates decrypted (each encryption draws a fresh nonce, so
    equal templates have different ciphertexts)."""
    db = sqlite3.connect(data_dir / "catalog.db")
    images = db.execute("SELECT sha256, path, width, height, status FROM images ORDER BY sha256")
    rows = db.execute(
        "SELECT i.sha256, f.left, f.top, f.right, f.bottom, f.status, f.template "
        "FROM faces f JOIN images i ON i.id = f.image_id ORDER BY i.sha256, f.left, f.top"
    ).fetchall()
    with Engine.open(data_dir, workers=1) as engine:
        faces = [
            (
                *row[:-1],
                None if row[-1] is None else engine.catalog.open_template(row[-1]).tobytes(),
            )
            for row in rows
        ]
    return list(images), faces


def _cli(data_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "vultus", "--data-dir", str(data_dir), *args]


@pytest.mark.slow
def test_an_ingest_killed_mid_run_and_resumed_equals_an_uninterrupted_one(
    tmp_path: Path, dev_photos: list[tuple[Path, str]], faces_dir: Path
) -> None:
    # Twenty photos (copied to a temporary folder, never into the repository) keep it quick.
    folder = tmp_path / "photos"
    folder.mkdir()
    for path, _ in dev_photos[:20]:
        shutil.copy(path, folder / f"{path.parent.name}_{path.name}")
    env = {**os.environ, "VULTUS_BATCH_SIZE": "4", "VULTUS_WORKERS": "1"}
    for name in ("killed", "whole"):
        subprocess.run(
            _cli(
                tmp_path / name,
                "sources",
                "add",
                "test",
                "--basis",
                "legitimate_interests",
                "--condition",
                "archiving_research",
                "--purpose",
                "tests",
                "--retention-days",
                "30",
            ),
            check=True,
            env=env,
            capture_output=True,
        )
    proc = subprocess.Popen(
        _cli(tmp_path / "killed", "add", str(folder), "--source", "test"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = tmp_path / "killed" / "catalog.db"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            n = sqlite3.connect(db).execute("SELECT count(*) FROM images").fetchone()[0]
        except sqlite3.OperationalError:
            continue
        if n >= 8:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial, _ = _snapshot(tmp_path / "killed")
    assert 0 < len(partial) < 20, "the kill should land mid-run"

    subprocess.run(
        _cli(tmp_path / "killed", "add", str(folder), "--source", "test"),
        check=True,
        env=env,
        capture_output=True,
    )
    subprocess.run(
        _cli(tmp_path / "whole", "add", str(folder), "--source", "test"),
        check=True,
        env=env,
        capture_output=True,
    )
    assert _snapshot(tmp_path / "killed") == _snapshot(tmp_path / "whole")

    # The killed run was closed by the next one, and what it committed was audited.
    with Engine.open(tmp_path / "killed", workers=1) as engine:
        first, _ = engine.catalog.get_run(1)
        assert first.status == "interrupted" and first.finished_at is not None
        assert 0 < first.images_added < 20
        audited = {e.details["run"]: e.details for e in engine.audit.entries(action="ingest")}
        assert audited[1]["images_added"] == first.images_added
        assert audited[1]["status"] == "interrupted" and audited[1]["closed_by_a_later_run"]
        assert audited[2]["images_added"] == 20 - first.images_added
        assert engine.catalog.running_runs() == []
        assert not list((tmp_path / "killed" / "runs").iterdir())  # no lock file left over

    # The index, saved only at the end of a run, is brought back in line on open.
    with Engine.open(tmp_path / "killed", workers=1) as engine:
        assert len(engine.index) == engine.catalog.counts()["faces_indexed"]
        probe = sorted(folder.iterdir())[0]
        assert engine.search(probe, purpose=PURPOSE, top_k=1).matches[0].distance < 1e-3


def test_a_consent_source_refuses_photos_without_their_consent_on_every_path(
    empty_engine: Engine, faces_dir: Path, tmp_path: Path
) -> None:
    """Given a source that rests on consent, when photos come without a consent record (by
    file, folder, manifest row, upload, server path or ingest job), then they are refused
    before anything is written; with the record they enter."""
    engine = empty_engine
    engine.add_source(
        "event",
        lawful_basis_code="consent",
        special_condition="explicit_consent",
        purpose="event photos",
        retention_days=30,
    )
    # Art. 9(2)(a) explicit consent alone makes a source consent-based too.
    engine.add_source(
        "members",
        lawful_basis_code="legitimate_interests",
        special_condition="explicit_consent",
        purpose="member badges",
        retention_days=30,
    )
    kit = faces_dir / "dev" / "images" / "Kit_Harington"
    photo = kit / "Kit_Harington_2.jpeg"
    manifest = tmp_path / "list.csv"
    manifest.write_text(f"path,source\n{photo},event\n{kit / 'Kit_Harington_3.jpg'},event\n")
    refusals: list[Callable[[], object]] = [
        lambda: engine.add([photo], source="event"),
        lambda: engine.add([kit], source="members"),
        lambda: engine.add_manifest(manifest),
        lambda: engine.upload(photo.read_bytes(), "kit.jpg", source="event"),
        lambda: engine.register(photo, source="members"),
        lambda: JobQueue(engine).submit("ingest", {"path": str(kit), "source": "event"}, "ops"),
    ]
    for refused in refusals:
        with pytest.raises(ConsentRequiredError) as caught:
            refused()
        assert caught.value.code == "consent_required"
        assert "rests on consent" in caught.value.message
    assert "line 2, 3" in _message(lambda: engine.add_manifest(manifest))
    assert engine.catalog.counts()["images"] == 0
    assert not list((engine.settings.data_dir / "images").glob("*"))  # no stored upload left
    assert engine.add([faces_dir / "dev" / "extra"], source="test").images_added > 0

    consent = engine.add_consent("event", "Kit", notice_version="v1")
    assert engine.add([photo], source="event", consent=consent).images_added == 1
    manifest.write_text(f"path,source,consent\n{kit / 'Kit_Harington_3.jpg'},event,{consent}\n")
    assert engine.add_manifest(manifest)[0].images_added == 1


def _message(call: Callable[[], object]) -> str:
    with pytest.raises(ConsentRequiredError) as caught:
        call()
    return caught.value.message
