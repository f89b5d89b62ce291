"""The catalog: SQL through SQLAlchemy, the source of truth for everything Vultus holds."""

from vultus.catalog.store import (
    Catalog,
    FaceRecord,
    NewFace,
    NewImage,
    catalog_exists,
    open_catalog,
)

__all__ = ["Catalog", "FaceRecord", "NewFace", "NewImage", "catalog_exists", "open_catalog"]
