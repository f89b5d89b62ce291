"""The command line, end to end through Typer's runner, as a user would type it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import PURPOSE
from vultus.cli import app
from vultus.engine import Engine

runner = CliRunner()


def vultus(data_dir: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--data-dir", str(data_dir), *args])
    return result.exit_code, result.output


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    code, out = vultus(
        tmp_path / "data",
        "sources",
        "add",
        "press",
        "--basis",
        "legitimate_interests",
        "--condition",
        "archiving_research",
        "--purpose",
        "press archive",
        "--retention-days",
        "365",
    )
    assert code == 0, out
    return tmp_path / "data"


def test_add_search_verify_and_status(
    data_dir: Path, gallery_split: tuple[list[Path], list[tuple[Path, str]]]
) -> None:
    gallery, probes = gallery_split
    folder = gallery[0].parent.parent  # dev/images: every dev photo
    code, out = vultus(data_dir, "add", str(folder), "--source", "press", "--workers", "1")
    assert code == 0, out
    assert "images added" in out and "57" in out

    code, out = vultus(data_dir, "add", str(folder), "--source", "press", "--workers", "1")
    assert code == 0 and "already held" in out

    probe, who = probes[0]
    code, out = vultus(data_dir, "search", str(probe), "-p", PURPOSE, "--top", "5", "--json")
    assert code == 0, out
    result = json.loads(out)
    assert result["found"] is True
    assert len(result["faces"]) == 1 and result["query_face"] == result["faces"][0]
    top = result["matches"][0]
    assert top["distance"] < 1e-3 and Path(top["image_path"]).parent.name == who
    # The shape the REST API answers: a box is an object, a photo has its file name.
    assert set(top["box"]) == {"left", "top", "right", "bottom"}
    assert top["file_name"] == probe.name and top["external_id"] is None
    others = [m for m in result["matches"][1:] if m["is_match"]]
    assert others and all(Path(m["image_path"]).parent.name == who for m in others)

    code, out = vultus(data_dir, "search", str(probe), "--purpose", PURPOSE)
    assert code == 0 and "match: 4 face(s)" in out and "threshold distance" in out

    # The case sheet: one self-contained page with the purpose, case, who and when.
    sheet = data_dir.parent / "case.html"
    code, out = vultus(
        data_dir, "search", str(probe), "-p", PURPOSE, "--case", "C-17", "--sheet", str(sheet)
    )
    assert code == 0, out
    page = sheet.read_text()
    for needed in (PURPOSE, "C-17", "os:", "Query: face 1 of 1", "Match</p>"):
        assert needed in page, needed
    assert 'src="http' not in page and page.count("data:image/jpeg;base64,") >= 5

    same = [p for p, w in probes if w == who]
    code, out = vultus(data_dir, "verify", str(same[0]), str(same[1]), "-p", PURPOSE, "--json")
    assert code == 0 and json.loads(out)["same_person"] is True

    code, out = vultus(data_dir, "index", "status")
    assert code == 0 and "faces indexed" in out

    code, out = vultus(data_dir, "index", "rebuild", "--factory", "IDMap2,Flat")
    assert code == 0 and "rebuilt" in out


def test_errors_are_one_clear_line_with_exit_code_2(data_dir: Path, faces_dir: Path) -> None:
    code, out = vultus(data_dir, "add", str(faces_dir / "dev" / "extra"), "--source", "unknown")
    assert code == 2 and "no source named 'unknown'" in out
    code, out = vultus(
        data_dir, "search", str(faces_dir / "dev" / "extra" / "dogs.jpg"), "-p", PURPOSE
    )
    assert code == 2 and "no face found" in out
    code, out = vultus(
        data_dir,
        "sources",
        "add",
        "bad",
        "--basis",
        "whim",
        "--condition",
        "explicit_consent",
        "--purpose",
        "x",
        "--retention-days",
        "1",
    )
    assert code == 2 and "Art. 6" in out


def test_a_file_name_cannot_forge_a_line_and_errors_stay_on_one_line(
    data_dir: Path, faces_dir: Path, tmp_path: Path
) -> None:
    # Given a photo with no face whose name carries a newline, a fake error and a terminal's
    # escape codes (clear the screen, red), in a folder with a long name ...
    folder = tmp_path / ("a-folder-with-a-long-name-" * 4)
    folder.mkdir()
    forged = "dog\nerror (forged): everything is fine\x1b[2J\x1b[31m[bold]x.jpg"
    (folder / forged).write_bytes((faces_dir / "dev" / "extra" / "dogs.jpg").read_bytes())
    # ... when it is searched with, and listed by an ingest, output that is not a terminal ...
    code, out = vultus(data_dir, "search", str(folder / forged), "-p", PURPOSE)
    assert code == 2
    # ... holds the error on one line, longer than 80 columns, with the name escaped ...
    (line,) = out.splitlines()
    assert line.startswith("error (no_face): no face found in ") and len(line) > 80
    assert "dog\\nerror (forged): everything is fine\\x1b[2J\\x1b[31m[bold]x.jpg" in line
    assert "\x1b" not in out
    code, out = vultus(data_dir, "add", str(folder / "missing\x1b[2J.jpg"), "--source", "press")
    assert code == 3 and "\x1b" not in out and "missing\\x1b[2J.jpg" in out


def test_subjects_and_face_deletion(data_dir: Path, gallery_split: tuple[list[Path], list]) -> None:
    gallery, probes = gallery_split
    vultus(data_dir, "add", *map(str, gallery[:3]), "--source", "press", "--workers", "1")
    code, out = vultus(data_dir, "search", str(gallery[0]), "-p", PURPOSE, "--json", "--top", "1")
    face_id = json.loads(out)["matches"][0]["face_id"]
    code, out = vultus(data_dir, "subjects", "create", "Someone", "--face", str(face_id))
    assert code == 0, out
    code, out = vultus(data_dir, "faces", "show", str(face_id))
    assert code == 0 and "Someone" in out and "legitimate_interests" in out
    code, out = vultus(data_dir, "faces", "delete", str(face_id), "--yes")
    assert code == 0 and "deleted 1" in out
    code, out = vultus(data_dir, "search", str(gallery[0]), "-p", PURPOSE, "--json", "--top", "3")
    assert face_id not in [m["face_id"] for m in json.loads(out)["matches"]]


def test_subjects_are_renamed_merged_unlinked_and_deleted_each_audited(
    data_dir: Path, gallery_split: tuple[list[Path], list]
) -> None:
    gallery, _ = gallery_split
    vultus(data_dir, "add", *map(str, gallery[:3]), "--source", "press", "--workers", "1")
    with Engine.open(data_dir, workers=1) as engine:
        a, b, c = (f.face_id for f in engine.list_faces(limit=3))
    assert vultus(data_dir, "subjects", "create", "A. L.", "--face", str(a))[0] == 0
    assert (
        vultus(data_dir, "subjects", "create", "Augusta", "--face", str(b), "--face", str(c))[0]
        == 0
    )

    code, out = vultus(data_dir, "subjects", "rename", "A. L.", "Ada Lovelace")
    assert code == 0 and "A. L. is now Ada Lovelace" in out
    code, out = vultus(data_dir, "subjects", "rename", "Ada Lovelace", "Augusta")
    assert code != 0 and "already exists" in out
    code, out = vultus(data_dir, "subjects", "merge", "Ada Lovelace", "Augusta")
    assert code == 0 and "2 face(s) moved" in out
    code, out = vultus(data_dir, "subjects", "unlink", str(c))
    assert code == 0 and "unlinked 1 face(s)" in out
    code, out = vultus(data_dir, "subjects", "list")
    assert code == 0 and "Ada Lovelace" in out and "Augusta" not in out
    code, out = vultus(data_dir, "subjects", "delete", "Ada Lovelace", "--yes")
    assert code == 0 and "2 face(s) left unnamed" in out
    code, out = vultus(data_dir, "subjects", "delete", "Ada Lovelace", "--yes")
    assert code != 0 and "no subject named 'Ada Lovelace'" in out

    with Engine.open(data_dir, workers=1) as engine:
        assert engine.subjects() == []
        assert len(engine.list_faces(limit=10)) == 3  # the faces stay, unnamed
        events = [e.details["event"] for e in engine.audit.entries() if e.action == "subject"]
    assert events == ["created", "created", "renamed", "merged", "unlinked", "deleted"]


def test_people_discover_proposes_without_linking(data_dir: Path, faces_dir: Path) -> None:
    folder = faces_dir / "dev" / "images"
    vultus(data_dir, "add", str(folder), "--source", "press", "--workers", "1")
    code, out = vultus(data_dir, "people", "discover", "--min-faces", "1")
    assert code != 0 and "--min-faces" in out  # a person is two faces or more
    code, out = vultus(data_dir, "people", "discover", "--min-faces", "2")
    assert code == 0, out
    assert "Proposed people" in out
    # The 17 dev people each have two or more photos: each becomes a proposal.
    assert "17 proposal(s)" in out
    with Engine.open(data_dir, workers=1) as engine:
        assert engine.subjects() == []  # proposals only: nothing was linked
        proposals = engine.discover_people()

    # Then I act on them by the ids the list prints, never typing a face id to name anyone.
    first, second, third = proposals[0], proposals[1], proposals[2]
    ref = f"p{first.face_ids[0]}"
    assert f" {ref} " in out
    stray = first.face_ids[-1]
    code, out = vultus(
        data_dir, "people", "accept", ref, "--name", "Ada Lovelace", "--leave-out", str(stray)
    )
    assert code == 0, out
    assert f"{len(first.face_ids) - 1} face(s) named Ada Lovelace" in out
    code, out = vultus(data_dir, "people", "accept", ref, "--name", "Again")
    assert code != 0 and "no proposal" in out and "discover again" in out
    code, out = vultus(data_dir, "people", "accept", "99", "--name", "Nobody")
    assert code != 0 and "not a proposal" in out
    # A row number names the proposal on the list as it is now: the second is now first.
    code, out = vultus(data_dir, "people", "accept", "1", "--subject", "Ada Lovelace")
    assert code == 0, out
    code, out = vultus(data_dir, "people", "apart", str(third.face_ids[0]))
    assert code == 0 and f"set apart from proposal p{third.face_ids[0]}" in out, out
    code, out = vultus(data_dir, "people", "hide", str(stray))
    assert code == 0 and "hid 1 face(s)" in out, out
    code, out = vultus(data_dir, "people", "unhide", str(stray))
    assert code == 0 and "1 face(s) back" in out, out
    with Engine.open(data_dir, workers=1) as engine:
        named = set(engine.catalog.subject_face_ids("Ada Lovelace"))
        assert named == set(first.face_ids[:-1]) | set(second.face_ids)
        left = {tuple(p.face_ids) for p in engine.discover_people()}
        assert tuple(third.face_ids) not in left  # its first face is set apart


def test_erase_says_which_originals_it_left_and_sources_say_who_may_delete_them(
    data_dir: Path, faces_dir: Path
) -> None:
    kit = faces_dir / "dev" / "images" / "Kit_Harington"
    rose = faces_dir / "dev" / "images" / "Rose_Leslie"
    selfie = kit / "Kit_Harington_1.jpeg"
    originals = [p for p in sorted(kit.iterdir()) if p != selfie]
    code, out = vultus(data_dir, "add", *map(str, [*originals, rose]), "-s", "press", "-w", "1")
    assert code == 0, out

    code, out = vultus(data_dir, "rights", "erase", str(selfie), "--yes")

    assert code == 0, out
    assert "2 face(s) removed from Vultus (catalog and index)" in out
    assert "original files deleted: 0" in out
    assert "files left in place, which may still show the person: 2" in out
    flat = out.replace("\n", "")
    assert all(str(p) in flat for p in originals) and all(p.exists() for p in originals)
    assert "originals_deletable is off" in flat

    code, out = vultus(
        data_dir,
        "sources",
        "add",
        "own-archive",
        "--basis",
        "legitimate_interests",
        "--condition",
        "archiving_research",
        "--purpose",
        "our archive",
        "--retention-days",
        "30",
        "--originals-deletable",
    )
    assert code == 0, out
    code, out = vultus(data_dir, "sources", "list")
    cells = {c.strip() for line in out.splitlines() for c in line.split("│")}
    assert code == 0 and {"yes", "no"} <= cells
    with Engine.open(data_dir, workers=1) as engine:
        deletable = {s.name: s.originals_deletable for s, _, _ in engine.sources()}
    assert deletable == {"own-archive": True, "press": False}


def test_a_consent_source_refuses_photos_without_consent_and_refusals_are_named(
    data_dir: Path, faces_dir: Path
) -> None:
    kit = faces_dir / "dev" / "images" / "Kit_Harington"
    code, out = vultus(
        data_dir,
        "sources",
        "add",
        "event",
        "--basis",
        "consent",
        "--condition",
        "explicit_consent",
        "--purpose",
        "event photos",
        "--retention-days",
        "30",
    )
    assert code == 0, out
    code, out = vultus(data_dir, "add", str(kit), "--source", "event", "--workers", "1")
    assert code == 2 and "consent_required" in out and "--consent" in out.replace("\n", "")

    # An erased person's photos, offered again, are refused and named one by one.
    code, out = vultus(data_dir, "add", str(kit), "--source", "press", "--workers", "1")
    assert code == 0, out
    code, out = vultus(data_dir, "rights", "erase", str(kit / "Kit_Harington_1.jpeg"), "--yes")
    assert code == 0, out
    code, out = vultus(data_dir, "add", str(kit), "--source", "press", "--workers", "1")
    assert code == 0 and "faces refused (suppression list)" in out
    refused = [line for line in out.splitlines() if "refused (suppression list):" in line]
    assert len(refused) == 3 and all(p.name in out for p in kit.iterdir())


def test_add_exits_3_when_it_finished_with_errors(
    data_dir: Path, gallery_split: tuple[list[Path], list], tmp_path: Path
) -> None:
    good = gallery_split[0][0]
    missing = tmp_path / "no-such-folder"
    code, out = vultus(data_dir, "add", str(good), str(missing), "--source", "press")
    assert code == 3, out
    out = " ".join(out.split())  # rich wraps lines at the console's width
    assert "finished with errors" in out and "no such file or folder" in out
    with Engine.open(data_dir, workers=1) as engine:
        assert engine.catalog.counts()["images"] == 1  # what could be added was

    code, out = vultus(data_dir, "add", str(good), "--source", "press")
    assert code == 0, out  # already held is no error


def test_a_dry_run_says_what_it_does(
    data_dir: Path, gallery_split: tuple[list[Path], list]
) -> None:
    code, out = vultus(data_dir, "add", "--help")
    assert "no face model is loaded" in " ".join(out.replace("│", " ").split())
    code, out = vultus(data_dir, "add", str(gallery_split[0][0]), "--source", "press", "--dry-run")
    assert code == 0, out
    out = " ".join(out.split())
    assert "no face is looked for" in out and "nothing was written" in out
    assert "photos to read │ 1" in out and "not counted" in out


def test_an_animated_image_is_said_to_be_read_as_its_first_frame(
    data_dir: Path, tmp_path: Path
) -> None:
    frames = [Image.new("RGB", (48, 48), (60 * i, 90, 160)) for i in range(3)]
    gif = tmp_path / "wave.gif"
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    for dry in (["--dry-run"], []):
        code, out = vultus(data_dir, "add", str(gif), "--source", "press", *dry)
        assert code == 0, out
        assert "only the first of 3 frames read" in out and "wave.gif" in out


def test_long_commands_print_progress_lines_when_output_is_not_a_terminal(
    data_dir: Path,
    gallery_split: tuple[list[Path], list],
    faces_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vultus.cli import common

    monkeypatch.setattr(common, "PROGRESS_EVERY", 0.0)  # a line at every step
    photos = list(map(str, gallery_split[0][:3]))
    code, out = vultus(data_dir, "add", *photos, "--source", "press", "--workers", "1")
    assert code == 0, out
    assert "ingest: 3/3 (100%) files" in out and "/s" in out and "left" in out

    code, out = vultus(data_dir, "index", "rebuild")
    assert code == 0 and "reading templates: 3/3 (100%) faces" in out, out

    labels = tmp_path / "labels.csv"
    rows = (faces_dir / "dev" / "labels.csv").read_text().splitlines()[:5]
    labels.write_text(
        "\n".join(
            [rows[0]]
            + [f"{faces_dir / 'dev' / r.split(',')[0]},{r.split(',')[1]}" for r in rows[1:]]
        )
    )
    code, out = vultus(data_dir, "eval", str(labels))
    assert "embedding photos: 4/4 (100%) photos" in out, out


def test_api_keys_expire_after_a_positive_number_of_days(data_dir: Path) -> None:
    for days in ("0", "-1"):
        code, out = vultus(
            data_dir, "keys", "create", "--name", f"k{days}", "--role", "auditor",
            "--expires-days", days,
        )  # fmt: skip
        assert code == 2 and "expires_invalid" in out, out
    code, out = vultus(data_dir, "keys", "list")
    assert code == 0 and "k0" not in out and "k-1" not in out

    code, out = vultus(
        data_dir, "keys", "create", "--name", "brief", "--role", "auditor", "--expires-days", "1"
    )
    assert code == 0, out
    with Engine.open(data_dir, workers=1) as engine:
        from sqlalchemy import update

        from vultus.catalog.models import ApiKey
        from vultus.clock import now

        with engine.catalog.session() as s, s.begin():
            s.execute(update(ApiKey).values(expires_at=now()))
    code, out = vultus(data_dir, "keys", "list")
    assert "expired" in out and "active" not in out


def test_the_data_directory_and_its_files_are_private(
    data_dir: Path, gallery_split: tuple[list[Path], list]
) -> None:
    import stat

    from vultus.rights.erasure import blur_faces

    vultus(data_dir, "add", str(gallery_split[0][0]), "--source", "press")
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    for name in ("catalog.db", "index.faiss"):
        assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600, name
    with Engine.open(data_dir, workers=1) as engine:
        summary, image_id = engine.upload(gallery_split[0][1].read_bytes(), "x.jpg", source="press")
        assert image_id is not None
        stored = Path(engine.catalog.image_summary(image_id).path)
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert blur_faces(stored, [[0, 0, 10, 10]])  # as an erasure blurs a stored copy
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600


def test_a_rebuild_too_small_for_ivf_says_why_it_is_exact(data_dir: Path) -> None:
    # The README's example, on a gallery far too small to train 4,096 IVF lists.
    code, out = vultus(data_dir, "index", "rebuild", "--factory", "IVF4096,Flat")
    assert code == 0, out
    assert "rebuilt IDMap2,Flat" in out
    assert "at least 159,744 faces" in out and "there are 0" in out

    code, out = vultus(data_dir, "index", "rebuild", "--factory", "IDMap2,Flat")
    assert code == 0 and "not IDMap2,Flat" not in out


def test_eval_keeps_photos_without_a_face_and_calibrate_installs_its_table(
    data_dir: Path, faces_dir: Path, tmp_path: Path
) -> None:
    # Given two people's photos and, labelled as Katy Perry, a photo of dogs (no face).
    dev = faces_dir / "dev"
    rows = [r.split(",") for r in (dev / "labels.csv").read_text().splitlines()[1:8]]
    photos = [(str(dev / p), who) for p, who in rows] + [(str(dev / "extra/dogs.jpg"), rows[0][1])]
    labels = tmp_path / "labels.csv"
    labels.write_text("path,identity\n" + "".join(f"{p},{w}\n" for p, w in photos))
    dogs = photos[-1][0]
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(
        "path1,path2,same,fold\n"
        f"{photos[0][0]},{photos[1][0]},1,0\n{photos[0][0]},{photos[4][0]},0,0\n"
        f"{photos[2][0]},{photos[3][0]},1,1\n{photos[2][0]},{photos[5][0]},0,1\n"
        f"{photos[0][0]},{dogs},1,1\n"
    )
    # When I evaluate, the pair and the probe with the dogs' photo count as misses...
    report = tmp_path / "eval.json"
    code, out = vultus(
        data_dir, "eval", str(labels), "--pairs", str(pairs), "--json", str(report),
        "--save-embeddings", str(tmp_path / "t"),
    )  # fmt: skip
    assert code == 0, out
    assert "1 pair(s) lack a face: counted as rejections" in out
    result = json.loads(report.read_text())
    assert result["n_photos"] == 8
    assert result["photos_without_face"] == [
        {"path": dogs, "identity": "Katy_Perry", "reason": "no usable face"}
    ]
    pa = result["pair_accuracy"]
    assert pa["n_pairs"] == 5 and pa["n_pairs_without_face"] == 1
    # fold 0: 2 of 2 right; fold 1: 2 of 3 (the same pair with the dogs is a miss)
    assert pa["accuracy_with_faces"] == 1.0 and pa["accuracy_mean"] == pytest.approx(5 / 6)
    assert result["identification"]["n_probes_without_face"] == 1

    # ...and calibrating puts the table where searches read it, and says so.
    code, out = vultus(data_dir, "calibrate", str(labels), "--embeddings", str(tmp_path / "t"))
    assert code == 0, out
    installed = data_dir / f"calibration_{result['model_id']}.json"
    assert installed.is_file() and "in effect" in out
    code, out = vultus(data_dir, "calibrate", str(labels), "--embeddings", str(tmp_path / "t"),
                       "--out", str(tmp_path / "c.json"))  # fmt: skip
    assert code == 0 and (tmp_path / "c.json").is_file()
    assert "not in effect" in " ".join(out.split())


def test_a_search_photo_with_two_near_equal_faces_asks_which_one(
    data_dir: Path, faces_dir: Path
) -> None:
    two = str(faces_dir / "dev" / "extra" / "two_people.jpg")
    # Given a photo of two people whose faces are the same size, when I search without --face,
    code, out = vultus(data_dir, "search", two, "-p", PURPOSE, "--json")
    assert code == 0, out
    result = json.loads(out)
    # then face 1 is searched, and the answer names both faces for me to choose from.
    assert result["face_tie"] == [1, 2] and result["query_face"]["number"] == 1
    assert "faces 1 and 2 are near-equal in size" in result["decision"]
    code, out = vultus(data_dir, "search", two, "-p", PURPOSE)
    assert code == 0 and "which did you mean? Search again with --face N" in " ".join(out.split())
    # When I say which, nothing is asked.
    code, out = vultus(data_dir, "search", two, "-p", PURPOSE, "--face", "2", "--json")
    assert code == 0, out
    result = json.loads(out)
    assert result["face_tie"] == [] and result["query_face"]["number"] == 2
