"""Videos as a user meets them: add a folder holding videos under a source, search with a
photo and land on the moment the person appears; erase them from a stored copy; get a clear
answer for every file that cannot be used, with nothing else lost."""

from __future__ import annotations

import io
import json
import re
import sys
import tracemalloc
import zipfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from conftest import PURPOSE, add_test_source, name_controller
from videos import Person, Shot, write_audio_only, write_long_blank, write_video
from vultus.catalog.models import FaceTrack
from vultus.clock import now
from vultus.engine import Engine
from vultus.pipeline.analyse import FacePipeline
from vultus.pipeline.footage import VideoProgress, analyse_video
from vultus.pipeline.tracking import TrackRules
from vultus.pipeline.video import VideoReader, frame_at
from vultus.search.sheet import render_sheet

av = pytest.importorskip("av", reason="video support (PyAV, the video extra) is not installed")


def _people(faces_dir: Path) -> tuple[Path, Path, Path]:
    """Two people for synthetic videos (dlib's aligned crops: the whole picture is the face),
    and another photo of the first, to search with."""
    a = sorted((faces_dir / "dev" / "images" / "John_Salley").iterdir())
    b = sorted((faces_dir / "dev" / "images" / "John_Savage").iterdir())
    return a[0], b[0], a[1]


def _two_shots(faces_dir: Path) -> list[Shot]:
    """Shot 1 (3 s): A drifting right and hidden by a board from 1.2 to 1.8 s, B beside.
    A cut; shot 2 (2 s): A alone, nearer, on another background."""
    a, b, _ = _people(faces_dir)
    return [
        Shot(
            3.0,
            [Person(a, 40, 100, height=160, drift=10), Person(b, 280, 100, height=160)],
            hidden=[(1.2, 1.8)],
        ),
        Shot(2.0, [Person(a, 160, 120, height=180)], background=(20, 30, 90)),
    ]


@pytest.fixture
def two_shots(tmp_path: Path, faces_dir: Path) -> Path:
    folder = tmp_path / "footage"
    folder.mkdir()
    write_video(folder / "interview.mp4", _two_shots(faces_dir))
    return folder


def _spans(engine: Engine, image_id: int) -> list[tuple[float, float]]:
    _, faces = engine.image(image_id)
    return sorted((f.track.start_s, f.track.end_s) for f in faces if f.track)


def test_a_person_is_one_track_per_appearance_and_a_search_lands_on_the_moment(
    empty_engine: Engine, two_shots: Path, faces_dir: Path
) -> None:
    summary = empty_engine.add([two_shots], source="test")
    assert summary.errors == [] and summary.images_added == 1
    # A (through the occlusion), B, and A again after the cut: three tracks, not one face
    # per sampled frame.
    assert summary.faces_indexed == 3

    _, _, probe = _people(faces_dir)
    result = empty_engine.search(probe, purpose=PURPOSE)
    found = [m for m in result.matches if m.is_match]
    assert {m.file_name for m in found} == {"interview.mp4"}
    spans = sorted((m.video.start_s, m.video.end_s) for m in found if m.video)
    assert len(spans) == 2, "A's two appearances, split at the cut"
    (s1, e1), (s2, e2) = spans
    assert s1 == 0.0 and 2.0 <= e1 < 3.0  # one track across the occlusion at 1.2-1.8 s
    assert s2 == 3.0 and e2 >= 4.0  # the cut at 3 s starts a new one
    for m in found:
        assert m.video is not None and m.video.start_s <= m.video.best_s <= m.video.end_s
    summary_row, faces = empty_engine.image(found[0].image_id)
    assert (summary_row.kind, summary_row.duration_s, summary_row.format) == ("video", 5.0, "MP4")
    assert len(faces) == 3
    # The JSON of a result names the moment.
    moment = found[0].to_json()["video"]
    assert set(moment) == {"start_s", "end_s", "best_s"}

    # Ingest is idempotent: the same video again adds nothing.
    again = empty_engine.add([two_shots], source="test")
    assert (again.images_duplicate, again.images_added, again.faces_indexed) == (1, 0, 0)


def test_the_sheet_shows_a_tracks_best_frame(
    empty_engine: Engine, two_shots: Path, faces_dir: Path, tmp_path: Path
) -> None:
    empty_engine.add([two_shots], source="test")
    _, _, probe = _people(faces_dir)
    result = empty_engine.search(probe, purpose=PURPOSE, top_k=2)
    sheet = render_sheet(result, probe, tmp_path / "sheet.png")
    picture = np.asarray(Image.open(sheet).convert("L"), dtype=np.float32)
    # Each tile is the face in its best frame, not the grey "image unavailable" tile.
    for n in range(1, 1 + len(result.matches)):
        x = 8 + n * 208
        tile = picture[8:208, x : x + 200]
        assert tile.std() > 20, f"tile {n} shows no picture"


def test_a_killed_video_ingest_resumes_without_duplicate_tracks(
    empty_engine: Engine, two_shots: Path
) -> None:
    def kill(progress: object) -> None:
        video: VideoProgress | None = getattr(progress, "video", None)
        if video is not None and video.seconds_done >= 2.0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        empty_engine.add([two_shots], source="test", on_progress=kill)
    assert empty_engine.list_images() == []  # nothing of a half-analysed video is kept

    summary = empty_engine.add([two_shots], source="test")
    assert (summary.images_added, summary.faces_indexed) == (1, 3)
    again = empty_engine.add([two_shots], source="test")
    assert again.images_duplicate == 1
    image = empty_engine.list_images()[0]
    assert len(empty_engine.image(image.id)[1]) == 3


def test_each_unusable_video_gets_a_clear_result_and_the_rest_go_in(
    empty_engine: Engine, tmp_path: Path
) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    blank = [Shot(4.0, [])]
    write_video(folder / "good.mp4", blank)
    write_video(folder / "variable-rate.mkv", blank, jitter=0.5)
    write_video(folder / "good.webm", [Shot(1.0, [])], codec="libvpx-vp9")
    write_video(folder / "good.avi", [Shot(1.0, [])], codec="mpeg4")
    write_audio_only(folder / "sound-only.mp4")
    mp4 = (folder / "good.mp4").read_bytes()
    (folder / "cut-short.mp4").write_bytes(mp4[: len(mp4) // 2])
    write_video(tmp_path / "whole.mkv", blank)
    mkv = (tmp_path / "whole.mkv").read_bytes()
    (folder / "cut-short.mkv").write_bytes(mkv[: len(mkv) // 2])
    (folder / "noise.mov").write_bytes(b"\x00\x00\x00\x18ftypqt  " + bytes(range(256)) * 8)
    (folder / "empty.webm").write_bytes(b"")

    summary = empty_engine.add([folder], source="test")
    codes = {Path(path).name: code for path, code, _ in summary.errors}
    assert codes == {
        "sound-only.mp4": "no_video_stream",
        "cut-short.mp4": "corrupt_video",  # its index (moov) was at the end, now missing
        "cut-short.mkv": "video_truncated",
        "noise.mov": "corrupt_video",
        "empty.webm": "empty_file",
    }
    messages = {Path(path).name: message for path, _, message in summary.errors}
    assert "no picture" in messages["sound-only.mp4"]
    assert "faces before that point are indexed" in messages["cut-short.mkv"]
    # Every usable video is held, the one cut short for what it has: nothing is lost.
    held = {Path(i.path).name: i for i in empty_engine.list_images()}
    assert set(held) == {
        "good.mp4",
        "variable-rate.mkv",
        "good.webm",
        "good.avi",
        "cut-short.mkv",
    }
    assert {i.kind for i in held.values()} == {"video"}
    assert held["good.webm"].format == "WEBM" and held["good.avi"].format == "AVI"
    assert held["variable-rate.mkv"].status == "no_faces"


def test_a_variable_frame_rate_is_sampled_by_each_frames_own_time(tmp_path: Path) -> None:
    path = tmp_path / "vfr.mkv"
    write_video(path, [Shot(6.0, [])], fps=8, jitter=0.6, seed=3)
    with VideoReader(path) as video:
        times = [f.t for f in video.frames(every_s=0.5)]
    gaps = np.diff(times)
    assert times[0] == 0.0 and times[-1] > 5.0
    # One sample per half second of the file's own clock, however unevenly frames fall.
    assert gaps.min() >= 0.5 - 1e-6 and gaps.max() < 0.5 + 2 * (1 / 8) * 1.6
    assert video.stopped_at is None


def test_a_four_hour_video_streams_in_bounded_memory_with_progress(
    empty_engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "long.mkv"
    write_long_blank(path, hours=4.0, every_s=10.0)
    assert path.stat().st_size < 2_000_000  # tiny, but four hours long
    pipeline = FacePipeline(empty_engine.settings)
    seen: list[float] = []
    tracemalloc.start()
    try:
        analysed = analyse_video(
            pipeline,
            path,
            rules=TrackRules(0.4, 0.35),
            every_s=0.5,
            cut_threshold=20.0,
            on_progress=lambda p: seen.append(p.seconds_done),
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert analysed.info.duration_s is not None and analysed.info.duration_s >= 4 * 3600
    assert analysed.seconds == 4 * 3600 and analysed.stopped_at is None
    assert analysed.frames_analysed == analysed.frames_decoded == 1441
    assert peak < 20_000_000, f"{peak / 1e6:.1f} MB held at once"
    assert len(seen) > 300 and seen == sorted(seen) and seen[-1] == 4 * 3600


def test_a_video_without_the_video_extra_says_what_to_install(
    empty_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    write_video(folder / "clip.mp4", [Shot(1.0, [])])
    monkeypatch.setitem(sys.modules, "av", None)  # import av now fails, as when not installed
    summary = empty_engine.add([folder], source="test")
    [(_, code, message)] = summary.errors
    assert code == "video_support_missing"
    assert "pip install 'vultus[video]'" in message


def test_erasure_blurs_the_person_across_their_span_in_a_stored_copy(
    empty_engine: Engine, faces_dir: Path, tmp_path: Path
) -> None:
    path = tmp_path / "upload.mp4"
    write_video(path, _two_shots(faces_dir))
    summary, image_id = empty_engine.upload(path.read_bytes(), "upload.mp4", source="test")
    assert image_id is not None and summary.faces_indexed == 3
    stored = Path(empty_engine.image(image_id)[0].path)
    assert stored.parent == empty_engine.settings.data_dir / "images"
    a_box = next(
        f.box for f in empty_engine.image(image_id)[1] if f.track and f.track.start_s == 3.0
    )
    b_box = next(f.box for f in empty_engine.image(image_id)[1] if f.box[0] > 250)

    def sharpness(t: float, box: tuple[int, int, int, int]) -> float:
        grey = frame_at(stored, t).mean(axis=2)[box[1] : box[3], box[0] : box[2]]
        return float(np.abs(np.diff(grey, axis=1)).mean())

    before = (sharpness(4.0, a_box), sharpness(1.0, b_box))
    _, _, probe = _people(faces_dir)
    plan = empty_engine.find_person(probe)
    assert len(plan.face_ids) == 2  # A's two tracks
    receipt = empty_engine.erase(plan)
    assert receipt.faces_erased == 2 and receipt.images_kept_with_others == 1
    assert receipt.blurred == [str(stored)]
    # A is blurred in the video across their span; B, who stays, is not.
    assert sharpness(4.0, a_box) < 0.5 * before[0]
    assert sharpness(1.0, b_box) > 0.8 * before[1]
    assert [f.track is not None for f in empty_engine.image(image_id)[1]] == [True]

    # Erasing B too leaves the video no one: the stored copy goes.
    b = sorted((faces_dir / "dev" / "images" / "John_Savage").iterdir())[1]
    receipt = empty_engine.erase(empty_engine.find_person(b))
    assert receipt.stored_copies_deleted == [str(stored)] and not stored.exists()


def test_an_access_package_lists_the_tracks_with_their_spans_and_best_frames(
    empty_engine: Engine, two_shots: Path, faces_dir: Path, tmp_path: Path
) -> None:
    empty_engine.add([two_shots], source="test")
    _, _, probe = _people(faces_dir)
    package, _ = empty_engine.access(empty_engine.review_person(probe), tmp_path / "p.zip")
    with zipfile.ZipFile(package) as zf:
        data = json.loads(zf.read("data.json"))
        [video] = data["images"]
        assert video["kind"] == "video"
        spans = sorted((f["video"]["start_s"], f["video"]["end_s"]) for f in video["faces"])
        assert len(spans) == 2 and spans[1][0] == 3.0
        for face in video["faces"]:
            crop = Image.open(io.BytesIO(zf.read(face["crop"])))
            assert min(crop.size) >= 100  # the best frame's face with its context
        assert "you appear from 0:03.0" in zf.read("report.html").decode()


def test_key_rotation_and_reembed_cover_videos(
    tmp_path: Path, two_shots: Path, faces_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A key file of its own: rotating must not change the key other tests' data is under.
    monkeypatch.setenv("VULTUS_KEY_FILE", str(tmp_path / "own.key"))
    with Engine.open(name_controller(tmp_path / "data"), workers=1) as engine:
        add_test_source(engine)
        engine.add([two_shots], source="test")
        _, _, probe = _people(faces_dir)
        counts = engine.rotate_keys()
        # The best-frame crops are sealed like templates, and re-sealed with them.
        assert counts["track_crops"] == 3 and counts["templates"] == 3
        found = [m for m in engine.search(probe, purpose=PURPOSE).matches if m.is_match]
        assert engine.face_still(found[0].face_id)[0][:2] == b"\xff\xd8"  # a JPEG again

        # Re-embedding reads each track's crop: the video is not decoded again.
        summary = engine.reembed("dlib-plain")
        assert (summary.faces_kept, summary.faces_not_found) == (3, 0)
        found = [m for m in engine.search(probe, purpose=PURPOSE).matches if m.is_match]
        assert len(found) == 2 and all(m.video for m in found)


def test_the_hamilton_clip_is_searched_with_a_still_photo(
    empty_engine: Engine, faces_dir: Path
) -> None:
    clip = faces_dir / "video" / "short_hamilton_clip.mp4"
    if not clip.exists():
        pytest.skip(f"the shared video clip is not at {clip}")
    summary = empty_engine.add([clip], source="test")
    assert summary.errors == [] and summary.faces_indexed >= 2
    result = empty_engine.search(faces_dir / "video" / "lin-manuel-miranda.png", purpose=PURPOSE)
    found = [m for m in result.matches if m.is_match]
    assert found and all(m.file_name == "short_hamilton_clip.mp4" for m in found)
    # Lin-Manuel Miranda's close-up, from the cut at 3.6 s to the next at 7.9 s.
    best = found[0]
    assert best.video is not None
    assert 3.5 <= best.video.start_s <= best.video.best_s <= best.video.end_s <= 7.9


def test_an_erased_persons_tracks_are_refused_at_ingest(
    empty_engine: Engine, faces_dir: Path, tmp_path: Path
) -> None:
    a, b, probe = _people(faces_dir)
    first, later = tmp_path / "first", tmp_path / "later"
    first.mkdir()
    later.mkdir()
    write_video(first / "one.mp4", [Shot(2.0, [Person(a, 40, 100, height=160)])])
    empty_engine.add([first], source="test")
    empty_engine.erase(empty_engine.find_person(probe))
    shots = [Shot(2.0, [Person(a, 60, 90, height=170), Person(b, 280, 100, height=160)])]
    write_video(later / "two.mp4", shots)
    summary = empty_engine.add([later], source="test")
    # The erased person's track is refused; the other person's is indexed.
    assert (summary.faces_suppressed, summary.faces_indexed) == (1, 1)
    assert summary.suppressed_photos == [str(later / "two.mp4")]


def test_the_web_plays_a_tracks_video_from_its_best_frame_for_the_searchs_purpose(
    empty_engine: Engine, two_shots: Path, faces_dir: Path
) -> None:
    from test_web import _web

    empty_engine.add([two_shots], source="test")
    web = _web(empty_engine)
    web.sign_in("investigator")
    _, _, probe = _people(faces_dir)
    form = {"purpose": PURPOSE, "case_ref": "CASE-V", "face": "1", "top": "10"}
    response = web.client.post(
        "/ui/search", data=form, files={"photo": (probe.name, probe.read_bytes(), "image/jpeg")}
    )
    assert response.status_code == 200
    assert "In the video from 0:03.0 to" in response.text
    player = re.search(
        r'<video class="moment"[^>]*src="(/ui/media/faces/(\d+)/video\?t=[^"#]+)#t=([\d.]+)"',
        response.text,
    )
    assert player is not None
    face = empty_engine.face(int(player[2]))
    assert face.track is not None and float(player[3]) == pytest.approx(face.track.best_s)
    # The thumbnail is the best frame's face.
    tile = re.search(rf'src="(/ui/media/faces/{player[2]}\.jpg\?t=[^"]+)"', response.text)
    assert tile is not None
    picture = web.client.get(tile[1].replace("&amp;", "&"))
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/jpeg"
    # The player gets the file, in ranges, each audited with the search and its purpose.
    video = web.client.get(player[1], headers={"Range": "bytes=0-99"})
    assert video.status_code == 206 and video.headers["content-type"] == "video/mp4"
    assert len(video.content) == 100
    search = empty_engine.audit.entries(action="search")[-1]
    view = empty_engine.audit.entries(action="view", actor="key:investigator-key")[-1]
    assert (view.details["search"], view.purpose, view.case_ref) == (search.id, PURPOSE, "CASE-V")
    assert web.client.get(f"/ui/media/faces/{player[2]}/video").status_code == 403  # no token
    assert "media-src 'self'" in response.headers["content-security-policy"]

    # The operator's library shows the video among the photos, and its page its tracks.
    web.sign_in("operator")
    image_id = face.image_id
    for side in (320, 1280):
        still = web.client.get(f"/ui/media/images/{image_id}.jpg?side={side}")
        assert still.status_code == 200 and still.headers["content-type"] == "image/jpeg"
    assert web.client.get("/ui/library").status_code == 200
    page = web.client.get(f"/ui/library/images/{image_id}")
    assert page.status_code == 200 and page.text.count("/ui/media/faces/") >= 3
    assert "A video, 0:05.0 long" in page.text and "0:03.0–0:04.5" in page.text


def test_a_browser_plays_the_video_from_the_tracks_best_frame(
    tmp_path: Path, faces_dir: Path
) -> None:
    """In Debian's Chromium: the results page's player opens the video at the moment."""
    from test_browser import CHROMIUM, CHROMIUM_ARGS, _serve, images_load, search, shot

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is missing")
    data_dir = name_controller(tmp_path / "data")
    folder = tmp_path / "footage"
    folder.mkdir()
    # WebM (VP9): a codec every Chromium build plays.
    write_video(folder / "interview.webm", _two_shots(faces_dir), codec="libvpx-vp9")
    with Engine.open(data_dir, workers=1) as engine:
        add_test_source(engine)
        assert engine.add([folder], source="test").faces_indexed == 3
    served = _serve(data_dir, faces_dir / "dev")
    server = next(served)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(20_000)
            page.goto(f"{server.url}/ui/login")
            page.fill("#api_key", server.keys["investigator"])
            page.click("button:has-text('Sign in')")
            page.wait_for_selector(".who .role:has-text('investigator')")
            search(page, server, _people(faces_dir)[2])
            page.click("button:has-text('Search')")
            page.wait_for_selector("h1:has-text('Search results')")
            assert images_load(page, ".results .card.match img")
            players = page.locator(".results .card.match video.moment")
            assert players.count() == 2
            for player in players.all():
                player.scroll_into_view_if_needed()
                src = player.get_attribute("src") or ""
                best = float(src.rsplit("#t=", 1)[1])
                player.evaluate(
                    "v => new Promise(done => v.readyState >= 1 ? done() : "
                    "v.addEventListener('loadedmetadata', done, {once: true}))"
                )
                assert player.evaluate("v => v.currentTime") == pytest.approx(best, abs=0.05)
                assert player.evaluate("v => v.duration") == pytest.approx(5.0, abs=0.2)
            shot(page, "video-results")
            browser.close()
    finally:
        next(served, None)


def test_the_api_takes_a_video_upload_and_shows_its_thumbnail(
    empty_engine: Engine, faces_dir: Path, tmp_path: Path
) -> None:
    from test_web import _web

    path = tmp_path / "press conference.mp4"
    write_video(path, _two_shots(faces_dir))
    web = _web(empty_engine)
    op = {"X-API-Key": web.keys["operator"]}
    files = {"file": ("press conference.mp4", path.read_bytes(), "video/mp4")}
    created = web.client.post("/v1/images", files=files, data={"source": "test"}, headers=op)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["summary"]["faces_indexed"] == 3
    assert body["image"]["file_name"] == "press conference.mp4"
    image_id = body["image_id"]
    thumb = web.client.get(f"/v1/images/{image_id}/thumbnail", headers=op)
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    file = web.client.get(f"/v1/images/{image_id}/file", headers=op)
    assert file.status_code == 200 and file.headers["content-type"] == "video/mp4"
    # A file that is not a video, sent as one, is refused with the decoder's reason.
    bad = {"file": ("clip.mp4", b"\x00\x00\x00\x18ftypisom" + b"\x00" * 64, "video/mp4")}
    refused = web.client.post("/v1/images", files=bad, data={"source": "test"}, headers=op)
    assert refused.status_code == 422 and refused.json()["code"] == "corrupt_video"


def test_retention_purges_an_expired_video_with_its_tracks(
    empty_engine: Engine, two_shots: Path
) -> None:
    empty_engine.add([two_shots], source="test")  # kept 30 days
    assert len(empty_engine.index) == 3
    later = now() + timedelta(days=31)
    [expired] = empty_engine.retention_report(later)
    assert [p.image_id for p in empty_engine.retention_run(later)] == [expired.image_id]
    assert empty_engine.catalog.counts()["images"] == 0 and len(empty_engine.index) == 0
    with empty_engine.catalog.session() as s:  # no crop of a face outlives its video
        assert s.scalar(select(func.count()).select_from(FaceTrack)) == 0
