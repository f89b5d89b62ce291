"""The catalog: SQL through SQLAlchemy, the source of truth for everything Vultus holds."""

from vultus.catalog.connect import catalog_exists, open_catalog
from vultus.catalog.records import FaceRecord, NewFace, NewImage
from vultus.catalog.store import Catalog

__all__ = ["Catalog", "FaceRecord", "NewFace", "NewImage", "catalog_exists", "open_catalog"]
