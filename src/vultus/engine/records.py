"""What the Engine's methods hand out: the catalog's rows and records, named here so that the
interfaces (cli, api, web) depend on the Engine alone and never import the catalog."""

from vultus.catalog.models import ApiKey, Job, RightsRequest, Source, Subject
from vultus.catalog.records import FaceRecord, ImageSummary

__all__ = ["ApiKey", "FaceRecord", "ImageSummary", "Job", "RightsRequest", "Source", "Subject"]
