"""What the Engine's methods hand out: the catalog's rows and records, named here so that the
interfaces (cli, api, web) depend on the Engine alone and never import the catalog."""

from datetime import datetime
from typing import NamedTuple

from vultus.catalog.collections import CollectionInfo, Member
from vultus.catalog.models import ApiKey, AuditEntry, Job, RightsRequest, Source, Subject
from vultus.catalog.records import FaceRecord, ImageSummary


class SuppressionEntry(NamedTuple):
    """An entry of the suppression list as people see it: never its sealed template."""

    id: int
    created_at: datetime
    request_ref: str | None  # the request that erased the person, where one did


__all__ = [
    "ApiKey",
    "CollectionInfo",
    "Member",
    "AuditEntry",
    "FaceRecord",
    "ImageSummary",
    "Job",
    "RightsRequest",
    "Source",
    "SuppressionEntry",
    "Subject",
]
