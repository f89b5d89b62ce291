"""Given photos in an S3-compatible bucket (a local moto server), when I ingest a prefix or a
manifest of s3:// URIs, then search finds them under their URIs, thumbnails and access crops
are drawn from the bucket, missing objects are reported per row, and an erasure blurs a
bucket's original only where that leaves no unblurred copy behind."""

from __future__ import annotations

import csv
import io
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from conftest import PURPOSE, add_test_source
from vultus import storage
from vultus.engine import Engine
from vultus.errors import RightsError, SourceError

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

BUCKET = "press-photos"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """A real S3 API on a free local port; credentials from the standard AWS variables."""
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
            mp.delenv(name, raising=False)
        yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="module")
def people(dev_photos: list[tuple[Path, str]]) -> dict[str, list[Path]]:
    """Four people with at least two photos each: one in the bucket, one to search with."""
    by_person: dict[str, list[Path]] = {}
    for path, who in dev_photos:
        by_person.setdefault(who, []).append(path)
    return dict(list((k, v) for k, v in by_person.items() if len(v) >= 2)[:4])


@pytest.fixture
def bucket(endpoint: str, people: dict[str, list[Path]]) -> Iterator[dict[str, str]]:
    """A fresh bucket holding each person's first photo under archive/ (and some clutter);
    returns person -> URI."""
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=BUCKET)
    uris = {}
    for n, (who, photos) in enumerate(people.items()):
        key = f"archive/2024/{n:02d}-{photos[0].name}"
        client.upload_file(str(photos[0]), BUCKET, key)
        uris[who] = f"s3://{BUCKET}/{key}"
    client.put_object(Bucket=BUCKET, Key="archive/2024/notes.txt", Body=b"not a photo")
    outside = next(iter(people.values()))[1]
    client.upload_file(str(outside), BUCKET, "elsewhere/outside-the-prefix.jpg")
    yield uris
    for page in client.get_paginator("list_object_versions").paginate(Bucket=BUCKET):
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            client.delete_object(Bucket=BUCKET, Key=v["Key"], VersionId=v["VersionId"])
    client.delete_bucket(Bucket=BUCKET)


@pytest.fixture
def engine(tmp_path: Path, endpoint: str) -> Iterator[Engine]:
    with Engine.open(tmp_path / "data", workers=1, s3_endpoint_url=endpoint) as engine:
        add_test_source(engine)
        yield engine


def test_a_prefix_is_listed_and_ingested_and_search_finds_the_photos_by_uri(
    tmp_path: Path, endpoint: str, bucket: dict[str, str], people: dict[str, list[Path]]
) -> None:
    # Two worker processes: they analyse the bytes the main process fetched once for hashing.
    with Engine.open(tmp_path / "data", workers=2, s3_endpoint_url=endpoint) as engine:
        add_test_source(engine)
        summary = engine.add([f"s3://{BUCKET}/archive/"], source="test")

        assert summary.errors == []
        assert summary.images_added == len(bucket)
        assert {i.path for i in engine.list_images()} == set(bucket.values())
        for who, photos in people.items():
            result = engine.search(photos[1], purpose=PURPOSE, top_k=1)
            assert result.matches[0].image_path == bucket[who]
            assert result.matches[0].is_match

        # Thumbnails are drawn from the object's bytes.
        image_id = engine.list_images()[0].id
        thumb = Image.open(io.BytesIO(engine.thumbnail(image_id, max_side=64)))
        assert thumb.format == "JPEG" and max(thumb.size) == 64
        data, media_type = engine.image_data(image_id)
        assert media_type == "image/jpeg" and len(data) > 1000
        with pytest.raises(SourceError) as caught:
            engine.image_file(image_id)
        assert caught.value.code == "not_a_local_file"

        # Again: the content hashes match, nothing is analysed or added twice.
        again = engine.add([f"s3://{BUCKET}/archive/"], source="test")
        assert again.images_added == 0 and again.images_duplicate == len(bucket)


def test_a_manifest_of_uris_reports_missing_objects_by_line(
    engine: Engine, bucket: dict[str, str], people: dict[str, list[Path]], tmp_path: Path
) -> None:
    first, second = list(bucket.values())[:2]
    manifest = tmp_path / "list.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["uri", "source"])
        writer.writerow([first, "test"])
        writer.writerow([f"s3://{BUCKET}/archive/2024/gone.jpg", "test"])
        writer.writerow(["s3://no-such-bucket/a.jpg", "test"])
        writer.writerow([second, ""])
        writer.writerow([f"s3://{BUCKET}/", "test"])

    [summary] = engine.add_manifest(manifest, source="test")

    assert summary.images_added == 2
    assert {i.path for i in engine.list_images()} == {first, second}
    assert sorted((m.split(": ")[0], code) for _, code, m in summary.errors) == [
        (f"{manifest} line 3", "object_not_found"),
        (f"{manifest} line 4", "object_not_found"),
        (f"{manifest} line 6", "bad_uri"),
    ]

    # The same photo on local disk is recognised by its content, wherever it is read from.
    local_copy = next(iter(people.values()))[0]  # what `first` was uploaded from
    again = engine.add([local_copy], source="test")
    assert again.images_duplicate == 1 and again.images_added == 0


def test_a_missing_prefix_is_an_error_not_a_crash(engine: Engine, endpoint: str) -> None:
    summary = engine.add(["s3://no-such-bucket/photos/"], source="test")
    assert [code for _, code, _ in summary.errors] == ["object_not_found"]
    assert summary.images_added == 0


def test_without_boto3_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    storage._make_client.cache_clear()
    monkeypatch.setitem(sys.modules, "boto3", None)  # what `import boto3` meets when absent
    with pytest.raises(SourceError) as caught:
        storage.read_location(f"s3://{BUCKET}/a.jpg")
    storage._make_client.cache_clear()
    assert caught.value.code == "s3_unavailable" and "vultus[s3]" in caught.value.message


def _two_people(engine: Engine, faces_dir: Path, endpoint: str) -> tuple[str, bytes]:
    """two_people.jpg in the bucket, ingested; and a selfie: its larger face, cut out."""
    photo = faces_dir / "dev" / "extra" / "two_people.jpg"
    boto3.client("s3", endpoint_url=endpoint).upload_file(str(photo), BUCKET, "group.jpg")
    uri = f"s3://{BUCKET}/group.jpg"
    assert engine.add([uri], source="test").images_added == 1
    image = engine.list_images()[0]
    _, faces = engine.image(image.id)
    left, top, right, bottom = faces[0].box
    grow = (right - left) // 2
    selfie = Image.open(photo).crop((left - grow, top - grow, right + grow, bottom + grow))
    out = io.BytesIO()
    selfie.save(out, format="PNG")
    return uri, out.getvalue()


def test_erasure_blurs_an_original_in_a_bucket_only_when_asked(
    engine: Engine, bucket: dict[str, str], faces_dir: Path, endpoint: str
) -> None:
    uri, selfie = _two_people(engine, faces_dir, endpoint)
    before = storage.read_location(uri, endpoint_url=endpoint)

    receipt = engine.erase(engine.find_person(selfie), blur_originals=True)

    assert receipt.faces_erased == 1 and receipt.copies_blurred == 1
    after = storage.read_location(uri, endpoint_url=endpoint)
    assert after != before
    # The photo keeps the other person, and their face still shows in the blurred copy.
    assert len(engine.pipeline.analyse(after).faces) == 1


def test_erasure_refuses_to_blur_in_a_bucket_that_keeps_versions(
    engine: Engine, bucket: dict[str, str], faces_dir: Path, endpoint: str
) -> None:
    boto3.client("s3", endpoint_url=endpoint).put_bucket_versioning(
        Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"}
    )
    uri, selfie = _two_people(engine, faces_dir, endpoint)
    before = storage.read_location(uri, endpoint_url=endpoint)
    plan = engine.find_person(selfie)

    with pytest.raises(RightsError) as caught:
        engine.erase(plan, blur_originals=True)
    assert caught.value.code == "cannot_blur_original" and "versions" in caught.value.message
    # Nothing was erased: the face is still in the catalog, the object untouched.
    assert len(engine.find_person(selfie).matches) == 1
    assert storage.read_location(uri, endpoint_url=endpoint) == before

    # Without --blur-originals the erasure goes ahead and the operator's object is left alone.
    receipt = engine.erase(plan)
    assert receipt.faces_erased == 1 and receipt.copies_blurred == 0
    assert storage.read_location(uri, endpoint_url=endpoint) == before


@pytest.mark.parametrize("versioned", [False, True])
def test_erasure_deletes_an_original_object_only_where_no_version_would_stay(
    engine: Engine,
    bucket: dict[str, str],
    people: dict[str, list[Path]],
    endpoint: str,
    versioned: bool,
) -> None:
    """A source that lets Vultus delete originals: the object of a photo that showed only the
    erased person goes, unless the bucket keeps versions (a delete would only hide it)."""
    if versioned:
        boto3.client("s3", endpoint_url=endpoint).put_bucket_versioning(
            Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"}
        )
    engine.add_source(
        "bucket-archive",
        lawful_basis_code="legitimate_interests",
        special_condition="archiving_research",
        purpose="our own archive",
        retention_days=30,
        originals_deletable=True,
    )
    who, photos = next(iter(people.items()))
    uri = bucket[who]
    assert engine.add([uri], source="bucket-archive").images_added == 1

    receipt = engine.erase(engine.find_person(photos[1]))

    assert receipt.faces_erased == 1 and receipt.images_erased == 1
    if versioned:
        assert receipt.originals_deleted == []
        ((item),) = receipt.left_in_place
        assert item["location"] == uri and "keeps object versions" in item["reason"]
        assert storage.read_location(uri, endpoint_url=endpoint)
    else:
        assert receipt.originals_deleted == [uri] and receipt.left_in_place == []
        with pytest.raises(SourceError) as caught:
            storage.read_location(uri, endpoint_url=endpoint)
        assert caught.value.code == "object_not_found"
