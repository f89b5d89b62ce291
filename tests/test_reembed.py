"""`vultus reembed`: a dlib catalog migrates to a model pack in the background, survives being
killed halfway, keeps face ids and names, never mixes templates, and erased people stay erased.
The pack is made of tiny generated ONNX graphs (tests/onnx_packs.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from conftest import PURPOSE
from onnx_packs import make_pack, plausible_face
from vultus.catalog.models import Face, StagedFace
from vultus.cli import app
from vultus.engine import Engine
from vultus.engine.jobs import JobQueue
from vultus.errors import ConfigError
from vultus.ingest.reembed import FILE_MISSING, ReembedProgress, cancel, pending

DEV = "images/{}"
# Every 150x150 dev photo has its dlib face at (10, 10, 135, 135): the pack's detector reports
# that same face (in 640x640 blob pixels), so the two models' faces match by IoU.
SQUARE_FACE = plausible_face((10 * 640 / 150, 10 * 640 / 150, 135 * 640 / 150, 135 * 640 / 150))
SIMM = "John_Simm/000288_00470387.jpg"  # in the gallery, named "simm" below
SALLEY_SELFIE = "John_Salley/000183_02159543.jpg"  # erased with this selfie
SALLEY_AGAIN = "John_Salley/000186_02159346.jpg"
SAVAGE_NEW = "John_Savage/000277_01099000.jpg"
SAVAGE_GONE = "John_Savage/000274_01099061.jpg"


def _photo(faces_dir: Path, name: str) -> Path:
    return faces_dir / "dev" / "images" / name


@pytest.fixture
def data_dir(gallery_dir: Path, tmp_path: Path) -> Path:
    """A copy of the dlib gallery, with the pack installed by name under DATA_DIR/packs."""
    data = tmp_path / "data"
    shutil.copytree(gallery_dir, data)
    make_pack(data / "packs" / "tiny", faces=[SQUARE_FACE])
    return data


def _face_of(engine: Engine, photo: Path) -> int:
    faces = [f for f in engine.list_faces(limit=500) if Path(f.image_path) == photo]
    assert len(faces) == 1
    return faces[0].face_id


def test_a_killed_migration_resumes_swaps_and_keeps_erased_people_out(
    data_dir: Path, faces_dir: Path, tmp_path: Path
) -> None:
    simm_photo = _photo(faces_dir, SIMM)
    gone = tmp_path / "gone.jpg"
    shutil.copy(_photo(faces_dir, SAVAGE_GONE), gone)
    with Engine.open(data_dir, workers=1, batch_size=4) as engine:
        engine.add([gone], source="test")
        gone_face = _face_of(engine, gone)
        simm = _face_of(engine, simm_photo)
        engine.create_subject("simm", [simm])
        engine.create_collection("press", source="test")  # a Rekognition client's collection
        (member,) = engine.catalog.add_members("press", [simm], external_image_id="simm").values()
        plan = engine.find_person(_photo(faces_dir, SALLEY_SELFIE))
        assert plan.matches
        engine.erase(plan)
        gone.unlink()  # re-embedding needs the files: this one will be reported
        images = len(engine.list_images(limit=500))

        def killed(progress: ReembedProgress) -> None:
            if progress.images_done >= 8:
                raise RuntimeError("killed halfway")

        with pytest.raises(RuntimeError, match="killed halfway"):
            engine.reembed("tiny", on_progress=killed)
        state = pending(engine.catalog)
        assert state is not None and state["last_image"] > 0
        # Until the swap, the catalog, the index and searches stay on the old model.
        assert engine.catalog.get_meta("model_id") == "dlib-resnet-v1-flip"
        result = engine.search(simm_photo, purpose=PURPOSE)
        assert result.matches[0].face_id == simm and result.found
        assert engine.index.model_id == "dlib-resnet-v1-flip"

    with Engine.open(data_dir, workers=1, batch_size=4) as engine:  # a new process
        seen: list[int] = []
        summary = engine.reembed("tiny", on_progress=lambda p: seen.append(p.images_done))
        assert 8 <= seen[0] < images  # it went on where it stopped, not from the start
        assert seen[-1] == images
        assert summary.model_id.startswith("pack-")
        assert summary.previous_model_id == "dlib-resnet-v1-flip"
        assert summary.images_missing == [(engine.face(gone_face).image_id, str(gone))]
        assert summary.faces_file_missing == 1
        assert summary.faces_kept >= 4  # the 150x150 photos' faces matched by IoU
        assert engine.catalog.get_meta("model_id") == summary.model_id
        assert pending(engine.catalog) is None
        with engine.catalog.session() as s:
            assert s.scalars(select(StagedFace)).all() == []
            gone_row = s.get(Face, gone_face)
            assert gone_row is not None
            assert (gone_row.status, gone_row.skip_reason) == ("skipped", FILE_MISSING)
            models = set(s.scalars(select(Face.model_id).where(Face.status == "indexed")))
        assert models == {summary.model_id}  # never mixed
        # Same face id, same name, new 512-d template; the index was rebuilt for the new model.
        assert engine.face(simm).subject == "simm"
        assert [(m.uuid, m.face_id) for m in engine.collection_faces("press")] == [(member, simm)]
        assert engine.catalog.templates_of([simm])[simm].shape == (512,)
        assert engine.index.model_id == summary.model_id
        assert len(engine.index) == engine.catalog.counts()["faces_indexed"]
        result = engine.search(simm_photo, purpose=PURPOSE)
        assert result.matches[0].face_id == simm
        assert result.matches[0].distance < 1e-3
        assert "vultus calibrate" in result.decision  # the pack has no calibration yet

    with Engine.open(data_dir, workers=1) as engine:  # vultus.toml now names the pack
        assert engine.settings.model == "tiny"
        again = engine.add([_photo(faces_dir, SALLEY_AGAIN)], source="test")
        assert (again.faces_suppressed, again.images_added) == (1, 0)
        other = engine.add([_photo(faces_dir, SAVAGE_NEW)], source="test")
        assert (other.faces_indexed, other.faces_suppressed) == (1, 0)


def test_reembed_runs_as_a_background_job_and_can_be_cancelled(data_dir: Path) -> None:
    with Engine.open(data_dir, workers=1, batch_size=4) as engine:
        with pytest.raises(RuntimeError):
            engine.reembed("tiny", on_progress=_die_at(4))
        assert cancel(engine.catalog) > 0
        assert pending(engine.catalog) is None
        queue = JobQueue(engine)
        job = queue.submit("reembed", {"model": "tiny"}, "tester")
        assert queue.run_pending() == 1
        done = queue.get(job.id)
        assert done.status == "done", done.error
        assert done.result is not None and str(done.result["model_id"]).startswith("pack-")
        assert done.done == done.total == len(engine.list_images(limit=500))
        assert engine.catalog.get_meta("model_id") == done.result["model_id"]


def test_a_migration_killed_before_its_audit_entry_is_audited_by_the_rerun(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vultus.audit import AuditLog

    real = AuditLog.append

    def killed(self: AuditLog, action: str, *args: object, **kwargs: object) -> object:
        if action == "reembed":
            raise KeyboardInterrupt("killed")
        return real(self, action, *args, **kwargs)  # type: ignore[arg-type]

    # Given a migration whose process died after the swap committed, before its audit entry ...
    with Engine.open(data_dir, workers=1, batch_size=4) as engine:
        monkeypatch.setattr(AuditLog, "append", killed)
        with pytest.raises(KeyboardInterrupt):
            engine.reembed("tiny")
        monkeypatch.setattr(AuditLog, "append", real)
        swapped = engine.catalog.get_meta("model_id")
        assert swapped is not None and swapped.startswith("pack-")
        assert engine.audit.entries(action="reembed") == []
    # ... running it again finishes it: the index rebuilt, the swap audited once, exit 0 ...
    with Engine.open(data_dir, workers=1) as rerun:
        summary = rerun.reembed("tiny")
        assert summary.model_id == swapped and summary.images > 0
        (entry,) = rerun.audit.entries(action="reembed")
        assert entry.details["model_id"] == swapped
        assert len(rerun.index) == rerun.catalog.counts()["faces_indexed"]
        # ... and only once.
        with pytest.raises(ConfigError, match="nothing to do"):
            rerun.reembed("tiny")
        assert len(rerun.audit.entries(action="reembed")) == 1
        assert rerun.audit.verify().ok


def _die_at(n: int):  # noqa: ANN202
    def die(progress: ReembedProgress) -> None:
        if progress.images_done >= n:
            raise RuntimeError("killed")

    return die


def test_the_command_line_migrates_in_the_foreground_or_queues_a_job(data_dir: Path) -> None:
    def vultus(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, ["--data-dir", str(data_dir), "reembed", *args])
        return result.exit_code, result.output

    code, out = vultus("--model", "tiny", "--background")
    assert code == 0 and "queued as job" in out
    code, out = vultus("--model", "nopack")
    assert code == 2 and "no model pack folder" in out
    code, out = vultus("--model", "tiny")
    assert code == 0 and "now pack-" in out and "was dlib-resnet-v1" in out
    code, out = vultus("--model", "tiny")
    assert code == 2 and "nothing to do" in out
