"""The catalog: SQL through SQLAlchemy, the source of truth for everything Vultus holds."""

from vultus.catalog.store import Catalog, FaceRecord, NewFace, NewImage, open_catalog

__all__ = ["Catalog", "FaceRecord", "NewFace", "NewImage", "open_catalog"]
