"""Long work in the background: folder ingest, index rebuild, key rotation, re-embedding.

Jobs live in the catalog's `jobs` table, so a server restart neither loses nor duplicates them.
A job that a dead process left "running" is queued again, and running it again is safe because
every kind is resumable in the engine: ingest skips what the catalog already holds, a rebuild
starts from the catalog, a key rotation finishes the one it finds half done, a re-embedding
resumes after the last image it staged.

One process at a time runs jobs: its worker holds an exclusive lock on `DATA_DIR/jobs.lock`,
which the kernel releases when that process dies. So a "running" job found by the process that
just took the lock was left by a dead one, never by a live neighbour (a second server process
on the same data directory only queues jobs; the lock holder runs them).
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from vultus.catalog.models import Job
from vultus.clock import now
from vultus.engine import Engine
from vultus.errors import ConfigError, RightsError, VultusError
from vultus.ingest.roots import confine
from vultus.pipeline.packs import load_pack, pack_folder

log = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("ingest", "rebuild_index", "rotate_keys", "reembed")
# A job started this many times without finishing is failed, not retried: it may be what
# kills the process, and a server must not crash-loop on it.
MAX_ATTEMPTS = 3
# Progress is written at most this often (seconds): each write is a catalog transaction.
PROGRESS_EVERY = 1.0
# How often an idle worker looks for jobs queued by another process.
POLL_SECONDS = 2.0
LOCK_FILE = "jobs.lock"

Progress = Callable[[int, int | None], None]


class JobQueue:
    """Submit jobs from any thread; one worker thread runs them, one at a time, in order.

    >>> queue = JobQueue(engine); queue.start()
    >>> job = queue.submit("ingest", {"path": "/srv/photos", "source": "archive"}, "key:ops")
    >>> queue.wait(job.id).status
    'done'
    """

    def __init__(self, engine: Engine, *, poll_seconds: float = POLL_SECONDS) -> None:
        self.engine = engine
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None

    # -- submitting and reading ----------------------------------------------------------------
    def submit(self, kind: str, params: Mapping[str, Any], actor: str) -> Job:
        """Check the parameters now (a typo fails at once, not minutes later) and queue."""
        job = self.engine.catalog.add_job(kind, _checked(self.engine, kind, params), actor)
        self._wake.set()
        return job

    def get(self, job_id: int) -> Job:
        return self.engine.catalog.get_job(job_id)

    def list(self, *, status: str | None = None, limit: int = 50) -> list[Job]:
        return self.engine.catalog.list_jobs(status=status, limit=limit)

    def wait(self, job_id: int, *, timeout: float = 60.0) -> Job:
        """Poll until the job is done or failed (for tests and scripts)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job.status in {"done", "failed"} or time.monotonic() >= deadline:
                return job
            time.sleep(0.05)

    # -- the worker ----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> bool:
        """Become the process that runs jobs: take the lock, queue again what a dead process
        left running, start the worker thread. False when another live process runs them."""
        if self.running:
            return True
        if not self._take_lock():
            log.info("another process runs the jobs of %s", self.engine.settings.data_dir)
            return False
        again, failed = self.engine.catalog.requeue_running_jobs(MAX_ATTEMPTS)
        if again or failed:
            log.warning(
                "jobs left running by a stopped process: %s queued again, %s failed", again, failed
            )
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="vultus-jobs", daemon=True)
        self._thread.start()
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Stop after the current job. A job still running when the timeout ends stays
        "running" in the catalog and is queued again by the next process to start."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return  # keep the lock: this process still runs that job until it exits
            self._thread = None
        self._release_lock()

    def run_pending(self) -> int:
        """Run queued jobs in this thread until none is left; returns how many ran."""
        ran = 0
        while not self._stop.is_set():
            job = self.engine.catalog.claim_job()
            if job is None:
                return ran
            self._run(job)
            ran += 1
        return ran

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_pending()
            except Exception:  # the catalog was unreachable: try again at the next poll
                log.exception("the job worker failed to read the queue")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _run(self, job: Job) -> None:
        catalog = self.engine.catalog
        last = 0.0

        def progress(done: int, total: int | None) -> None:
            nonlocal last
            if time.monotonic() - last >= PROGRESS_EVERY or (total is not None and done >= total):
                last = time.monotonic()
                catalog.update_job(job.id, done=done, total=total)

        log.info("job %d (%s) started, attempt %d", job.id, job.kind, job.attempts)
        try:
            result = HANDLERS[job.kind](self.engine, job, progress)
        except VultusError as exc:
            catalog.update_job(
                job.id, status="failed", error=f"{exc.code}: {exc.message}", finished_at=now()
            )
            log.warning("job %d (%s) failed: %s", job.id, job.kind, exc.message)
            return
        except Exception as exc:
            log.exception("job %d (%s) failed unexpectedly", job.id, job.kind)
            catalog.update_job(
                job.id,
                status="failed",
                error=f"internal_error: {type(exc).__name__}: {exc}",
                finished_at=now(),
            )
            return
        catalog.update_job(job.id, status="done", result=result, finished_at=now())
        log.info("job %d (%s) done", job.id, job.kind)

    def _take_lock(self) -> bool:
        path = self.engine.settings.data_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None


# -- the kinds of job ----------------------------------------------------------------------------
def _checked(engine: Engine, kind: str, params: Mapping[str, Any]) -> dict[str, Any]:
    if kind not in KINDS:
        raise ConfigError(f"unknown job kind {kind!r}; one of: {', '.join(KINDS)}")
    if kind == "ingest":
        source = str(params.get("source") or "")
        engine.catalog.get_source(source)
        consent = params.get("consent")
        if consent is not None and not str(consent).strip().isdigit():
            raise RightsError(
                f"consent {consent!r}: give the id of a consent record", code="consent_invalid"
            )
        consent_id = int(str(consent)) if consent is not None else None
        engine.check_consent(source, consent_id)
        # Last, so that no answer before it depends on the path. A client names the path:
        # confined to the ingest roots, links resolved.
        path = confine(str(params.get("path") or ""), engine.settings.ingest_root_paths)
        return {"path": str(path), "source": source, "consent": consent_id}
    if kind == "rebuild_index":
        factory = params.get("factory")
        return {"factory": str(factory) if factory else None}
    if kind == "reembed":
        model = str(params.get("model") or "")
        folder = pack_folder(model, engine.settings.data_dir)
        if folder is not None:
            load_pack(folder)  # a missing or invalid pack fails now, not minutes later
        return {"model": str(folder.resolve()) if folder is not None else model}
    return {}


def _ingest(engine: Engine, job: Job, progress: Progress) -> dict[str, Any]:
    p = job.params
    summary = engine.add(
        [str(p["path"])],
        source=str(p["source"]),
        roots=engine.settings.ingest_root_paths,
        consent=int(str(p["consent"])) if p.get("consent") is not None else None,
        actor=job.actor,
        on_progress=lambda pr: progress(pr.files_done, pr.files_total),
    )
    return dataclasses.asdict(summary)


def _rebuild_index(engine: Engine, job: Job, progress: Progress) -> dict[str, Any]:
    factory = job.params.get("factory")
    index = engine.rebuild_index(str(factory) if factory else None)
    progress(len(index), len(index))
    return {"factory": index.factory, "faces": len(index)}


def _rotate_keys(engine: Engine, job: Job, progress: Progress) -> dict[str, Any]:
    counts = engine.rotate_keys(actor=job.actor)
    return {"key": engine.keyring.active_id, **counts}


def _reembed(engine: Engine, job: Job, progress: Progress) -> dict[str, Any]:
    summary = engine.reembed(
        str(job.params["model"]),
        actor=job.actor,
        on_progress=lambda p: progress(p.images_done, p.images_total),
    )
    return dataclasses.asdict(summary)


HANDLERS: dict[str, Callable[[Engine, Job, Progress], dict[str, Any]]] = {
    "ingest": _ingest,
    "rebuild_index": _rebuild_index,
    "rotate_keys": _rotate_keys,
    "reembed": _reembed,
}
