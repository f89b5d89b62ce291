"""Given the dev photos, when I search with a face, then I find that person."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import PURPOSE
from vultus.engine import Engine
from vultus.errors import NoFaceError, NotFoundError


def test_every_probe_finds_its_own_identity_at_rank_1(
    gallery: Engine, gallery_split: tuple[list[Path], list[tuple[Path, str]]]
) -> None:
    gallery_photos, probes = gallery_split
    identity_of = {str(p.resolve()): p.parent.name for p in gallery_photos}
    misses = []
    for probe, who in probes:
        result = gallery.search(probe, purpose=PURPOSE, top_k=3)
        top = result.matches[0]
        if identity_of[top.image_path] != who:
            misses.append((probe.name, who, identity_of[top.image_path], top.distance))
    assert misses == []


def test_a_match_is_decided_by_calibrated_false_match_rate(
    gallery: Engine, gallery_split: tuple[list[Path], list[tuple[Path, str]]]
) -> None:
    _, probes = gallery_split
    result = gallery.search(probes[0][0], purpose=PURPOSE, top_k=5)
    assert result.found
    best, *rest = result.matches
    assert best.is_match and best.fmr < 1e-3
    # Results are ordered and the estimated FMR grows with distance.
    assert [m.distance for m in result.matches] == sorted(m.distance for m in result.matches)
    assert all(a.fmr <= b.fmr for a, b in zip(result.matches, rest, strict=False))
    # Other people in a 17-face gallery are far above the threshold.
    assert not any(m.is_match for m in rest)
    assert best.source == "test"
    assert best.lawful_basis == "legitimate_interests / archiving_research"


def test_a_stranger_gets_no_match(gallery: Engine, faces_dir: Path) -> None:
    # Kit Harington is in the gallery and is the larger face here. Once his gallery face is
    # deleted he is a stranger to the gallery, and the answer must be "no match".
    result = gallery.search(
        faces_dir / "dev" / "extra" / "kit_with_rose.jpg", purpose=PURPOSE, top_k=3
    )
    assert result.faces_seen == 2
    for m in result.matches:
        if m.is_match:
            gallery.delete_faces([m.face_id])
    again = gallery.search(
        faces_dir / "dev" / "extra" / "kit_with_rose.jpg", purpose=PURPOSE, top_k=3
    )
    assert not again.found
    assert "no match" in again.decision


def test_search_reports_every_face_and_uses_the_one_asked_for(
    gallery: Engine, faces_dir: Path
) -> None:
    photo = faces_dir / "dev" / "extra" / "kit_with_rose.jpg"
    first = gallery.search(photo, purpose=PURPOSE, top_k=1)
    second = gallery.search(photo, purpose=PURPOSE, top_k=1, face=2)
    assert first.faces_seen == second.faces_seen == 2
    assert first.query_face and second.query_face
    box_area = lambda b: (b.right - b.left) * (b.bottom - b.top)  # noqa: E731
    assert box_area(first.query_face.box) >= box_area(second.query_face.box)
    assert first.faces == second.faces and second.query_face == first.other_faces[0]
    assert first.matches[0].image_id != second.matches[0].image_id
    with pytest.raises(NoFaceError) as info:
        gallery.search(photo, purpose=PURPOSE, face=3)
    assert info.value.code == "face_out_of_range"


def test_a_photo_without_a_face_is_a_clear_error(gallery: Engine, faces_dir: Path) -> None:
    with pytest.raises(NoFaceError, match="no face found"):
        gallery.search(faces_dir / "dev" / "extra" / "dogs.jpg", purpose=PURPOSE)


def test_search_by_face_id_and_by_subject(
    gallery: Engine, gallery_split: tuple[list[Path], list[tuple[Path, str]]]
) -> None:
    _, probes = gallery_split
    katy = [p for p, who in probes if who == "Katy_Perry"]
    summary = gallery.add(katy, source="test")
    assert summary.images_added == len(katy)
    by_photo = gallery.search(katy[0], purpose=PURPOSE, top_k=10)
    katy_faces = [m.face_id for m in by_photo.matches if m.is_match]
    assert len(katy_faces) == len(katy) + 1  # her gallery photo and the probes just added

    by_face = gallery.search_face(katy_faces[0], purpose=PURPOSE, top_k=10)
    assert katy_faces[0] not in [m.face_id for m in by_face.matches]
    assert {m.face_id for m in by_face.matches if m.is_match} == set(katy_faces[1:])

    gallery.create_subject("Katy Perry", katy_faces[:2])
    by_subject = gallery.search_subject("Katy Perry", purpose=PURPOSE, top_k=10)
    assert {m.face_id for m in by_subject.matches if m.is_match} == set(katy_faces)
    assert by_subject.matches[0].subject == "Katy Perry"
    with pytest.raises(NotFoundError):
        gallery.search_face(10_000_000, purpose=PURPOSE)


def test_verify_same_and_different_people(
    gallery: Engine, gallery_split: tuple[list[Path], list[tuple[Path, str]]]
) -> None:
    _, probes = gallery_split
    by_person: dict[str, list[Path]] = {}
    for path, who in probes:
        by_person.setdefault(who, []).append(path)
    a, b = by_person["John_Simm"][:2]
    same = gallery.verify(a, b, purpose=PURPOSE, fmr=1e-3)
    assert same.same_person and same.distance <= same.threshold
    other = gallery.verify(a, by_person["Katy_Perry"][0], purpose=PURPOSE, fmr=1e-3)
    assert not other.same_person and other.fmr > same.fmr


def test_deleted_face_is_gone_at_once_and_after_reopening(
    gallery: Engine, gallery_split: tuple[list[Path], list[tuple[Path, str]]]
) -> None:
    _, probes = gallery_split
    probe = probes[0][0]
    target = gallery.search(probe, purpose=PURPOSE, top_k=1).matches[0].face_id
    assert gallery.delete_faces([target]) == 1
    assert target not in [
        m.face_id for m in gallery.search(probe, purpose=PURPOSE, top_k=20).matches
    ]
    data_dir = gallery.settings.data_dir
    gallery.close()
    with Engine.open(data_dir, workers=1) as reopened:
        ids = [m.face_id for m in reopened.search(probe, purpose=PURPOSE, top_k=20).matches]
        assert target not in ids
        assert len(reopened.index) == reopened.catalog.counts()["faces_indexed"]


def test_the_python_api_example_in_the_readme_runs(
    gallery_split: tuple[list[Path], list[tuple[Path, str]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    code = readme.split("<!-- python-api:", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    # Given an archive folder, a photo to upload and one to search with, as the README has ...
    gallery, probes = gallery_split
    archive = tmp_path / "archive" / "2024"
    archive.mkdir(parents=True)
    for photo in [
        p for p in gallery if p.parent.name in {"Katy_Perry", "Elon_Musk", "Rose_Leslie"}
    ]:
        shutil.copy(photo, archive / f"{photo.parent.name}{photo.suffix}")
    katy = [p for p, who in probes if who == "Katy_Perry"]
    shutil.copy(katy[0], tmp_path / "ada.jpg")
    shutil.copy(katy[1], tmp_path / "query.jpg")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VULTUS_WORKERS", "1")
    # ... when the example runs, then it finds her in the archive and in the upload.
    names: dict[str, object] = {}
    exec(code, names)
    out = capsys.readouterr().out
    assert "match ada.jpg crm-42" in out and "match Katy_Perry" in out
    assert out.splitlines()[-1].startswith("match: 2 face(s)")
    shape = names["shape"]
    assert isinstance(shape, dict) and {m["file_name"] for m in shape["matches"][:2]} == {
        "ada.jpg",
        "Katy_Perry.jpg",
    }
