"""The catalog: SQL through SQLAlchemy, the source of truth for everything Vultus holds.

Its names load on first use (PEP 562), so that a module that needs one record type, such as an
ingest worker's `NewImage`, does not load the store and the migrations with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vultus.catalog.connect import catalog_exists, open_catalog
    from vultus.catalog.records import FaceRecord, NewFace, NewImage
    from vultus.catalog.store import Catalog

__all__ = ["Catalog", "FaceRecord", "NewFace", "NewImage", "catalog_exists", "open_catalog"]

_WHERE = {
    "Catalog": "store",
    "FaceRecord": "records",
    "NewFace": "records",
    "NewImage": "records",
    "catalog_exists": "connect",
    "open_catalog": "connect",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"vultus.catalog.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
