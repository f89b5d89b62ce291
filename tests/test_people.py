"""People discovery's memory, at the Engine: what reviewers decided goes with the faces and the
people it is about, and holds however often discovery runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from vultus.engine import Engine
from vultus.errors import ConfigError, NotFoundError


def kit_faces(engine: Engine, faces_dir: Path) -> list[int]:
    """Kit Harington's three dev photos in the gallery (it holds one already)."""
    kit = sorted((faces_dir / "dev" / "images" / "Kit_Harington").iterdir())
    engine.add(kit[1:], source="test")
    return [f.face_id for f in engine.list_faces(limit=100) if "Kit_Harington" in f.image_path]


def test_decisions_hold_across_runs_and_go_with_their_faces_and_people(
    gallery: Engine, faces_dir: Path
) -> None:
    kit = kit_faces(gallery, faces_dir)
    assert len(kit) == 3
    [proposal] = [p for p in gallery.discover_people(min_faces=2) if set(p.face_ids) & set(kit)]
    assert proposal.face_ids == kit

    gallery.set_apart([kit[0]], kit)
    for _ in range(2):  # discovery run again, and again: the face stays apart
        assert [p.face_ids for p in gallery.discover_people(min_faces=2)] == [kit[1:]]

    gallery.accept_person(kit[1:], name="Kit", left_out=[kit[0]])
    assert gallery.discover_people(min_faces=2) == []
    assert gallery.suggestions("Kit") == []  # the face left out is not suggested
    gallery.create_subject("K. Harington")
    gallery.merge_subjects("K. Harington", "Kit")  # the merged person keeps the decision
    assert gallery.suggestions("K. Harington") == []
    gallery.delete_subject("K. Harington")  # its decisions go with it
    assert [p.face_ids for p in gallery.discover_people(min_faces=2)] == [kit[1:]]

    # Erasing a face erases what was decided about it.
    assert kit[0] in gallery.catalog.faces_apart()
    gallery.delete_faces([kit[0]])
    assert kit[0] not in gallery.catalog.faces_apart()
    assert gallery.set_apart([kit[1]], [kit[2]]) == 1
    with pytest.raises(NotFoundError):
        gallery.set_apart([kit[0]], kit[1:])
    with pytest.raises(ConfigError, match="at least 2"):
        gallery.discover_people(min_faces=1)
