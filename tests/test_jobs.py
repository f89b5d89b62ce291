"""Background jobs survive the server: a job a dead process left running is finished by the next
one, exactly once, and nothing is lost or ingested twice."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import add_test_source
from vultus.engine import Engine
from vultus.engine.jobs import MAX_ATTEMPTS, JobQueue
from vultus.errors import ConfigError, NotFoundError


def test_a_job_left_running_by_a_dead_process_finishes_exactly_once(
    tmp_path: Path, gallery_split: tuple[list[Path], list]
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for photo in gallery_split[0][:6]:
        shutil.copy(photo, photos / f"{photo.parent.name}{photo.suffix}")
    files = sorted(photos.iterdir())
    data = tmp_path / "data"

    # Given a server that took an ingest job and died half way through it ...
    roots = [str(tmp_path)]  # where the server may read what clients name
    with Engine.open(data, workers=1, ingest_roots=roots) as engine:
        add_test_source(engine)
        queue = JobQueue(engine)
        job = queue.submit("ingest", {"path": str(photos), "source": "test"}, "key:ops")
        claimed = engine.catalog.claim_job()
        assert claimed is not None and claimed.id == job.id and claimed.status == "running"
        engine.add(files[:3], source="test", actor="key:ops")
        assert engine.catalog.counts()["images"] == 3

    # ... when the server starts again, the job is queued again and finishes ...
    with Engine.open(data, workers=1, ingest_roots=roots) as engine:
        queue = JobQueue(engine, poll_seconds=0.05)
        assert queue.start()
        finished = queue.wait(job.id, timeout=120)
        queue.close()
        # ... exactly once, with nothing lost and nothing ingested twice.
        assert finished.status == "done", finished.error
        assert finished.attempts == 2 and finished.done == finished.total == 6
        assert finished.result is not None
        assert finished.result["images_added"] == 3 and finished.result["images_duplicate"] == 3
        counts = engine.catalog.counts()
        assert counts["images"] == 6 and counts["faces_indexed"] == 6
        assert len(engine.index) == 6
        ingests = engine.audit.entries(action="ingest")
        assert [e.actor for e in ingests] == ["key:ops", "key:ops"]

    # A later start finds nothing to run again.
    with Engine.open(data, workers=1) as engine:
        queue = JobQueue(engine)
        assert queue.start()
        queue.close()
        assert queue.run_pending() == 0
        assert [j.status for j in queue.list()] == ["done"]
        assert len(engine.audit.entries(action="ingest")) == 2
        assert engine.catalog.counts()["images"] == 6


def test_one_process_runs_the_jobs_and_a_job_that_keeps_killing_it_is_given_up(
    empty_engine: Engine,
) -> None:
    first = JobQueue(empty_engine)
    job = first.submit("rebuild_index", {}, "key:admin")
    # It was started as many times as allowed, and each time the process died.
    empty_engine.catalog.update_job(job.id, status="running", attempts=MAX_ATTEMPTS)
    assert first.start()
    failed = first.get(job.id)
    assert failed.status == "failed" and f"{MAX_ATTEMPTS} times" in (failed.error or "")

    # While one process runs jobs, a second one only queues them.
    second = JobQueue(empty_engine)
    assert not second.start()
    first.close()
    assert second.start()
    second.close()

    with pytest.raises(ConfigError):
        first.submit("format_disk", {}, "key:admin")
    with pytest.raises(NotFoundError) as info:
        first.submit("ingest", {"path": "/no/such/folder", "source": "test"}, "key:ops")
    assert info.value.code == "path_not_found"
    assert [j.id for j in first.list()] == [job.id]
