"""The persisted queue of background jobs (ingest, index rebuilds, key rotation, reembed)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from vultus.catalog.models import (
    Job,
)
from vultus.clock import now
from vultus.errors import NotFoundError


class JobQueries:
    if TYPE_CHECKING:

        def session(self) -> Session: ...

    # -- background jobs ---------------------------------------------------------------------
    def add_job(self, kind: str, params: dict[str, Any], actor: str) -> Job:
        with self.session() as s, s.begin():
            job = Job(
                kind=kind,
                params=params,
                status="queued",
                actor=actor,
                done=0,
                created_at=now(),
                attempts=0,
            )
            s.add(job)
        return job

    def get_job(self, job_id: int) -> Job:
        with self.session() as s:
            job = s.get(Job, job_id)
        if job is None:
            raise NotFoundError(f"no job with id {job_id}")
        return job

    def list_jobs(self, *, status: str | None = None, limit: int = 50) -> list[Job]:
        with self.session() as s:
            q = select(Job).order_by(Job.id.desc()).limit(max(0, limit))
            if status is not None:
                q = q.where(Job.status == status)
            return list(s.scalars(q))

    def claim_job(self) -> Job | None:
        """The oldest queued job, marked running (one more attempt), or None."""
        with self.session() as s, s.begin():
            job_id = s.scalar(
                select(Job.id).where(Job.status == "queued").order_by(Job.id).limit(1)
            )
            if job_id is None:
                return None
            claimed = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == "queued")
                .values(
                    status="running",
                    started_at=now(),
                    finished_at=None,
                    error=None,
                    attempts=Job.attempts + 1,
                )
            )
            if not claimed.rowcount:  # type: ignore[attr-defined]
                return None
        return self.get_job(job_id)

    def update_job(self, job_id: int, **values: Any) -> None:
        with self.session() as s, s.begin():
            s.execute(update(Job).where(Job.id == job_id).values(**values))

    def requeue_running_jobs(self, max_attempts: int) -> tuple[list[int], list[int]]:
        """Jobs a dead process left running: queued again, or failed once they have been
        started `max_attempts` times (a job that kills its process must not loop forever).
        Returns (requeued ids, failed ids)."""
        with self.session() as s, s.begin():
            stale = s.execute(
                select(Job.id, Job.attempts).where(Job.status == "running").order_by(Job.id)
            ).all()
            again = [i for i, n in stale if n < max_attempts]
            given_up = [i for i, n in stale if n >= max_attempts]
            if again:
                s.execute(update(Job).where(Job.id.in_(again)).values(status="queued"))
            if given_up:
                s.execute(
                    update(Job)
                    .where(Job.id.in_(given_up))
                    .values(
                        status="failed",
                        finished_at=now(),
                        error=f"the server stopped during this job {max_attempts} times; "
                        "not retried again",
                    )
                )
        return again, given_up
