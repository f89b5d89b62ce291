"""AWS Rekognition clients work against Vultus unchanged: boto3, pointed at a live `vultus serve`
on loopback with the credential `vultus keys create --aws` prints, manages collections, indexes
and searches faces, compares and detects them; every answer has the shape botocore's service
model gives it (checked with `botocore.stub.Stubber`), every refusal the type AWS gives it.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

boto3 = pytest.importorskip("boto3", reason="boto3 (vultus[s3]) drives these tests")
import botocore.auth  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402
from botocore.stub import Stubber  # noqa: E402

from conftest import PURPOSE, add_test_source, name_controller  # noqa: E402
from vultus.engine import Engine  # noqa: E402

REGION = "eu-central-1"
# No retries: a refusal must come back as it was answered, once.
NO_RETRY = Config(retries={"max_attempts": 1, "mode": "standard"})


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def vultus(data: Path, *args: str) -> str:
    """Run the command line as an operator would; its output."""
    done = subprocess.run(
        [sys.executable, "-m", "vultus", "--data-dir", str(data), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def aws_key(data: Path, *args: str) -> tuple[str, str]:
    """`vultus keys create ... --aws`: the AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY lines."""
    out = vultus(data, "keys", "create", *args, "--aws")
    found = dict(re.findall(r"^(AWS_ACCESS_KEY_ID|AWS_SECRET_ACCESS_KEY)=(\S+)$", out, re.M))
    return found["AWS_ACCESS_KEY_ID"], found["AWS_SECRET_ACCESS_KEY"]


@dataclass
class Server:
    url: str
    data: Path
    keys: dict[str, tuple[str, str]]

    def client(self, who: str = "app", **options: Any) -> Any:
        access, secret = self.keys[who]
        return boto3.client(
            "rekognition",
            endpoint_url=f"{self.url}/rekognition",
            region_name=REGION,
            aws_access_key_id=access,
            aws_secret_access_key=secret,
            config=NO_RETRY,
            **options,
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Iterator[Server]:
    data = name_controller(tmp_path_factory.mktemp("rekognition") / "data")
    with Engine.open(data, workers=1) as engine:
        add_test_source(engine)
        add_test_source(engine, "other")

        def key(name: str, roles: list[str], **bound: str) -> tuple[str, str]:
            engine.keys.create(name, roles, **bound)
            return engine.aws_credentials.create(name)

        keys = {
            "unbound": key("unbound", ["investigator"]),
            "elsewhere": key(
                "elsewhere", ["operator", "investigator"], purpose=PURPOSE, source="other"
            ),
            "searcher": key("searcher", ["investigator"], purpose=PURPOSE),
        }
    # What a Rekognition application holds, made as its operator makes it: one key that adds
    # and searches, bound to a purpose and to the source of what it adds.
    keys["app"] = aws_key(
        data, "--name", "app", "--role", "operator", "--role", "investigator",
        "--purpose", PURPOSE, "--case", "CASE-7", "--source", "test",
    )  # fmt: skip
    port = free_port()
    log = data.parent / "serve.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vultus", "--data-dir", str(data), "serve",
             "--port", str(port), "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=5)
            break
        except OSError:  # not listening yet, or busy starting
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    try:
        yield Server(url, data, keys)
    finally:
        proc.terminate()
        proc.wait(30)


def photo(faces_dir: Path, who: str, n: int = 0) -> bytes:
    return sorted((faces_dir / "dev" / "images" / who).glob("*.jpg"))[n].read_bytes()


def checked(client: Any, operation: str, response: dict[str, Any], **params: Any) -> None:
    """Stubber validates a response against the operation's output shape in botocore's model:
    feed it the server's real answer."""
    body = {k: v for k, v in response.items() if k != "ResponseMetadata"}
    method = _snake(operation)
    with Stubber(client) as stub:
        stub.add_response(method, body)
        getattr(client, method)(**params)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def error_of(call: Any, **params: Any) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as info:
        call(**params)
    err = info.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Message"]


def signed_post(server: Server, operation: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """A request signed as botocore signs one, with any body."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"{server.url}/rekognition/"
    headers = {
        "X-Amz-Target": f"RekognitionService.{operation}",
        "Content-Type": "application/x-amz-json-1.1",
    }
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    SigV4Auth(Credentials(*server.keys["app"]), "rekognition", REGION).add_auth(request)
    prepared = urllib.request.Request(url, data=body, headers=dict(request.headers.items()))
    try:
        with urllib.request.urlopen(prepared, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def test_an_application_indexes_searches_and_deletes_faces_with_boto3(
    server: Server, faces_dir: Path
) -> None:
    rek = server.client()
    made = rek.create_collection(CollectionId="press")
    checked(rek, "CreateCollection", made, CollectionId="press")
    assert made["StatusCode"] == 200 and made["CollectionArn"].endswith(":collection/press")

    # Katy Perry's first photo and Barack Obama's, with the application's own image ids.
    katy = rek.index_faces(
        CollectionId="press",
        Image={"Bytes": photo(faces_dir, "Katy_Perry")},
        ExternalImageId="crm-42",
        MaxFaces=1,
        QualityFilter="AUTO",
    )
    checked(rek, "IndexFaces", katy, CollectionId="press", Image={"Bytes": b"x"})
    assert len(katy["FaceRecords"]) == 1
    face = katy["FaceRecords"][0]["Face"]
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", face["FaceId"]
    )
    assert face["ExternalImageId"] == "crm-42"
    box = face["BoundingBox"]
    assert 0 < box["Width"] < 1 and 0 < box["Height"] < 1 and 0 <= box["Left"] < 1
    assert {m["Type"] for m in katy["FaceRecords"][0]["FaceDetail"]["Landmarks"]} >= {
        "eyeLeft", "eyeRight", "nose",
    }  # fmt: skip
    obama = rek.index_faces(
        CollectionId="press", Image={"Bytes": photo(faces_dir, "Barack_Obama")}
    )["FaceRecords"][0]["Face"]["FaceId"]

    # A photo of two people, one face asked for: the larger is indexed, the other said why not.
    couple = (faces_dir / "dev" / "extra" / "two_people.jpg").read_bytes()
    two = rek.index_faces(CollectionId="press", Image={"Bytes": couple}, MaxFaces=1)
    checked(rek, "IndexFaces", two, CollectionId="press", Image={"Bytes": b"x"})
    assert len(two["FaceRecords"]) == 1
    assert [u["Reasons"] for u in two["UnindexedFaces"]] == [["EXCEEDS_MAX_FACES"]]
    couple_face = two["FaceRecords"][0]["Face"]["FaceId"]

    described = rek.describe_collection(CollectionId="press")
    checked(rek, "DescribeCollection", described, CollectionId="press")
    assert described["FaceCount"] == 3 and described["UserCount"] == 0
    listed = rek.list_collections()
    checked(rek, "ListCollections", listed)
    assert listed["CollectionIds"] == ["press"]

    # ListFaces pages with NextToken, every face once.
    seen: list[str] = []
    token: dict[str, str] = {}
    while True:
        page = rek.list_faces(CollectionId="press", MaxResults=2, **token)
        checked(rek, "ListFaces", page, CollectionId="press")
        seen += [f["FaceId"] for f in page["Faces"]]
        if "NextToken" not in page:
            break
        token = {"NextToken": page["NextToken"]}
    assert sorted(seen) == sorted([face["FaceId"], obama, couple_face])

    # Another photo of Katy Perry finds her first photo, above the default threshold of 80
    # (the calibrated decision), and not Obama.
    found = rek.search_faces_by_image(
        CollectionId="press", Image={"Bytes": photo(faces_dir, "Katy_Perry", 1)}
    )
    checked(rek, "SearchFacesByImage", found, CollectionId="press", Image={"Bytes": b"x"})
    matches = found["FaceMatches"]
    assert [m["Face"]["FaceId"] for m in matches] == [face["FaceId"]]
    assert 80 <= matches[0]["Similarity"] <= 100
    assert matches[0]["Face"]["ExternalImageId"] == "crm-42"
    assert 0 < found["SearchedFaceBoundingBox"]["Width"] < 1
    # Audited as a native search, with the key's bound purpose and case.
    with Engine.open(server.data, workers=1) as engine:
        entry = engine.audit.entries(action="search")[-1]
        assert (entry.purpose, entry.case_ref) == (PURPOSE, "CASE-7")
        assert entry.actor.startswith("key:app")

    # FaceMatchThreshold 0 shows the "possible" tier too, never below 50, best first.
    loose = rek.search_faces_by_image(
        CollectionId="press",
        Image={"Bytes": photo(faces_dir, "Katy_Perry", 1)},
        FaceMatchThreshold=0,
    )["FaceMatches"]
    similarities = [m["Similarity"] for m in loose]
    assert similarities == sorted(similarities, reverse=True)
    assert all(s >= 50 for s in similarities)

    by_face = rek.search_faces(CollectionId="press", FaceId=face["FaceId"])
    checked(rek, "SearchFaces", by_face, CollectionId="press", FaceId=face["FaceId"])
    assert by_face["SearchedFaceId"] == face["FaceId"]
    assert face["FaceId"] not in [m["Face"]["FaceId"] for m in by_face["FaceMatches"]]

    # 1:1 comparisons and detection need no collection.
    same = rek.compare_faces(
        SourceImage={"Bytes": photo(faces_dir, "Katy_Perry", 2)},
        TargetImage={"Bytes": photo(faces_dir, "Katy_Perry", 3)},
    )
    checked(rek, "CompareFaces", same, SourceImage={"Bytes": b"x"}, TargetImage={"Bytes": b"x"})
    assert len(same["FaceMatches"]) == 1 and same["FaceMatches"][0]["Similarity"] >= 80
    other = rek.compare_faces(
        SourceImage={"Bytes": photo(faces_dir, "Katy_Perry", 2)},
        TargetImage={"Bytes": photo(faces_dir, "Barack_Obama", 1)},
    )
    assert other["FaceMatches"] == [] and len(other["UnmatchedFaces"]) == 1
    detected = rek.detect_faces(Image={"Bytes": couple})
    checked(rek, "DetectFaces", detected, Image={"Bytes": b"x"})
    assert len(detected["FaceDetails"]) == 2
    assert all(50 < d["Confidence"] <= 100 for d in detected["FaceDetails"])
    with Engine.open(server.data, workers=1) as engine:
        assert [e.details["faces"] for e in engine.audit.entries(action="detect")] == [2]
        assert len(engine.audit.entries(action="verify")) == 2

    # Users: a person's faces grouped under the application's user id.
    checked(rek, "CreateUser", rek.create_user(CollectionId="press", UserId="katy"),
            CollectionId="press", UserId="katy")  # fmt: skip
    tied = rek.associate_faces(
        CollectionId="press",
        UserId="katy",
        FaceIds=[face["FaceId"], "0" * 8 + "-0000-0000-0000-" + "0" * 12],
    )
    checked(rek, "AssociateFaces", tied, CollectionId="press", UserId="katy", FaceIds=[obama])
    assert tied["AssociatedFaces"] == [{"FaceId": face["FaceId"]}]
    assert tied["UnsuccessfulFaceAssociations"][0]["Reasons"] == ["FACE_NOT_FOUND"]
    # Another person's face does not join her (UserMatchThreshold, 75 by default).
    unlike = rek.associate_faces(CollectionId="press", UserId="katy", FaceIds=[couple_face])
    assert unlike["AssociatedFaces"] == []
    assert unlike["UnsuccessfulFaceAssociations"][0]["Reasons"] == ["LOW_MATCH_CONFIDENCE"]
    users = rek.search_users_by_image(
        CollectionId="press", Image={"Bytes": photo(faces_dir, "Katy_Perry", 1)}
    )
    checked(rek, "SearchUsersByImage", users, CollectionId="press", Image={"Bytes": b"x"})
    assert [u["User"]["UserId"] for u in users["UserMatches"]] == ["katy"]
    assert rek.list_faces(CollectionId="press", UserId="katy")["Faces"][0]["UserId"] == "katy"

    # A face tied to a user stays until untied; the others go, from the catalog too.
    deleted = rek.delete_faces(CollectionId="press", FaceIds=[obama, face["FaceId"]])
    checked(rek, "DeleteFaces", deleted, CollectionId="press", FaceIds=[obama])
    assert deleted["DeletedFaces"] == [obama]
    assert deleted["UnsuccessfulFaceDeletions"][0]["Reasons"] == ["ASSOCIATED_TO_AN_EXISTING_USER"]
    assert rek.describe_collection(CollectionId="press")["FaceCount"] == 2

    # The protocol lives beside the native API, not in its OpenAPI document.
    with urllib.request.urlopen(f"{server.url}/openapi.json", timeout=30) as response:
        assert not [p for p in json.load(response)["paths"] if p.startswith("/rekognition")]

    gone = rek.delete_collection(CollectionId="press")
    checked(rek, "DeleteCollection", gone, CollectionId="press")
    code, status, _ = error_of(rek.describe_collection, CollectionId="press")
    assert (code, status) == ("ResourceNotFoundException", 400)
    with Engine.open(server.data, workers=1) as engine:
        assert engine.catalog.counts()["faces_indexed"] == 0


def test_restricted_and_deleted_faces_leave_every_answer(server: Server, faces_dir: Path) -> None:
    rek = server.client()
    rek.create_collection(CollectionId="rights")
    ids = [
        rek.index_faces(CollectionId="rights", Image={"Bytes": photo(faces_dir, "Katy_Perry", n)})[
            "FaceRecords"
        ][0]["Face"]["FaceId"]
        for n in (0, 1)
    ]
    query = {"CollectionId": "rights", "Image": {"Bytes": photo(faces_dir, "Katy_Perry", 2)}}
    assert {m["Face"]["FaceId"] for m in rek.search_faces_by_image(**query)["FaceMatches"]} == set(
        ids
    )
    with Engine.open(server.data, workers=1) as engine:
        members = {m.uuid: m.face_id for m in engine.collection_faces("rights")}
        engine.restrict(face_ids=[members[ids[0]]], reason="accuracy contested")
        engine.delete_faces([members[ids[1]]])
    assert rek.search_faces_by_image(**query)["FaceMatches"] == []
    assert rek.list_faces(CollectionId="rights")["Faces"] == []
    assert rek.describe_collection(CollectionId="rights")["FaceCount"] == 0
    code, _, _ = error_of(rek.search_faces, CollectionId="rights", FaceId=ids[0])
    assert code == "ResourceNotFoundException"


def test_limits_and_patterns_are_the_servers_to_enforce(server: Server, faces_dir: Path) -> None:
    rek = server.client()
    # botocore checks types and minimum lengths; patterns and maxima are the server's.
    for bad in ("has space", "x" * 256, "slash/ed"):
        code, status, message = error_of(rek.create_collection, CollectionId=bad)
        assert (code, status) == ("InvalidParameterException", 400), message
        assert "collectionId" in message
    rek.create_collection(CollectionId="limits")
    code, _, _ = error_of(rek.create_collection, CollectionId="limits")
    assert code == "ResourceAlreadyExistsException"
    code, _, message = error_of(
        rek.search_faces_by_image,
        CollectionId="limits",
        Image={"Bytes": photo(faces_dir, "Katy_Perry")},
        MaxFaces=5000,
    )
    assert code == "InvalidParameterException" and "4096" in message
    code, _, _ = error_of(rek.search_faces, CollectionId="limits", FaceId="not-a-uuid")
    assert code == "InvalidParameterException"
    code, _, _ = error_of(
        rek.index_faces, CollectionId="limits", Image={"Bytes": photo(faces_dir, "Katy_Perry")},
        ExternalImageId="has space",
    )  # fmt: skip
    assert code == "InvalidParameterException"
    code, _, _ = error_of(rek.list_faces, CollectionId="limits", NextToken="garbage")
    assert code == "InvalidPaginationTokenException"
    code, _, _ = error_of(rek.detect_faces, Image={"Bytes": b"not a photo at all"})
    assert code == "InvalidImageFormatException"
    dogs = (faces_dir / "dev" / "extra" / "dogs.jpg").read_bytes()
    code, _, message = error_of(
        rek.search_faces_by_image, CollectionId="limits", Image={"Bytes": dogs}
    )
    assert code == "InvalidParameterException" and "no face" in message
    in_bucket = {"S3Object": {"Bucket": "photos", "Name": "n.jpg"}}
    code, _, _ = error_of(rek.index_faces, CollectionId="limits", Image=in_bucket)
    assert code == "InvalidS3ObjectException"
    code, _, _ = error_of(rek.describe_collection, CollectionId="nowhere")
    assert code == "ResourceNotFoundException"


def test_keys_and_signatures_are_checked_as_aws_checks_them(
    server: Server, faces_dir: Path
) -> None:
    # A key bound to no purpose cannot use an API that states none.
    code, _, message = error_of(
        server.client("unbound").compare_faces,
        SourceImage={"Bytes": photo(faces_dir, "Katy_Perry")},
        TargetImage={"Bytes": photo(faces_dir, "Katy_Perry", 1)},
    )
    assert code == "AccessDeniedException" and "purpose" in message
    # A collection is managed by keys of its source; another source's key searches it only.
    server.client().create_collection(CollectionId="ours")
    elsewhere = server.client("elsewhere")
    code, _, message = error_of(elsewhere.describe_collection, CollectionId="ours")
    assert code == "AccessDeniedException" and "source 'test'" in message
    code, _, _ = error_of(
        elsewhere.index_faces, CollectionId="ours", Image={"Bytes": photo(faces_dir, "Katy_Perry")}
    )
    assert code == "AccessDeniedException"
    assert "ours" not in elsewhere.list_collections()["CollectionIds"]
    assert (
        elsewhere.search_faces_by_image(
            CollectionId="ours", Image={"Bytes": photo(faces_dir, "Katy_Perry")}
        )["FaceMatches"]
        == []
    )
    # An investigator's key searches but does not add faces.
    searcher = server.client("searcher")
    code, _, _ = error_of(searcher.create_collection, CollectionId="theirs")
    assert code == "AccessDeniedException"

    access, secret = server.keys["app"]
    bad = secret[:-1] + ("y" if secret[-1] == "x" else "x")
    wrong = boto3.client(
        "rekognition", endpoint_url=f"{server.url}/rekognition", region_name=REGION,
        aws_access_key_id=access, aws_secret_access_key=bad, config=NO_RETRY,
    )  # fmt: skip
    code, status, _ = error_of(wrong.list_collections)
    assert (code, status) == ("InvalidSignatureException", 400)
    unknown = boto3.client(
        "rekognition", endpoint_url=f"{server.url}/rekognition", region_name=REGION,
        aws_access_key_id="AKIAUNKNOWNUNKNOWN00", aws_secret_access_key=secret, config=NO_RETRY,
    )  # fmt: skip
    code, status, _ = error_of(unknown.list_collections)
    assert (code, status) == ("UnrecognizedClientException", 400)
    # Signed 20 minutes ago: AWS allows 15.
    past = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=20)
    with mock.patch.object(botocore.auth, "get_current_datetime", lambda: past):
        code, status, message = error_of(server.client().list_collections)
    assert (code, status) == ("InvalidSignatureException", 400)
    assert message.startswith("Signature expired")
    # Unsigned: no credentials at all.
    request = urllib.request.Request(
        f"{server.url}/rekognition/",
        data=b"{}",
        headers={
            "X-Amz-Target": "RekognitionService.ListCollections",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 400
    assert json.loads(refused.value.read())["__type"] == "MissingAuthenticationTokenException"

    # What boto3 never sends, a hand-signed request may: unknown members, broken base64, no JSON.
    for body, expected in (
        (b'{"CollectionId": "ours", "Colour": "red"}', "InvalidParameterException"),
        (b'{"Image": {"Bytes": "not base64!"}}', "InvalidParameterException"),
        (b"{not json", "SerializationException"),
    ):
        status, answer = signed_post(server, "DescribeCollection" if b"Coll" in body else
                                     "DetectFaces", body)  # fmt: skip
        assert (status, answer["__type"]) == (400, expected), answer

    # A revoked key's credential goes with it.
    with Engine.open(server.data, workers=1) as engine:  # as `vultus keys revoke` does
        engine.keys.revoke("searcher")
    code, _, _ = error_of(searcher.list_collections)
    assert code == "UnrecognizedClientException"


def test_the_credential_secret_is_sealed_and_a_rotation_reseals_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VULTUS_KEY_FILE", str(tmp_path / "own.key"))  # rotated: its own
    with Engine.open(name_controller(tmp_path / "data"), workers=1) as engine:
        engine.keys.create("app", "operator")
        access, secret = engine.aws_credentials.create("app")
        assert engine.aws_credentials.secret_of(access) == ("app", secret)
        for file in (tmp_path / "data").glob("catalog.db*"):  # the database and its log
            assert secret.encode() not in file.read_bytes()
        before = engine.keyring.active_id
        counts = engine.rotate_keys()
        assert counts["aws_credentials"] == 1 and engine.keyring.active_id != before
        assert engine.aws_credentials.secret_of(access) == ("app", secret)


def test_the_shipped_input_shapes_are_botocores() -> None:
    """inputs.json is extracted from botocore's model; a newer botocore must not disagree."""
    import botocore

    from vultus.api.compat.rekognition import shapes

    folder = Path(botocore.__file__).parent / "data" / "rekognition"
    (model_file,) = sorted(folder.glob("*/service-2.json*"))[-1:]
    opener = gzip.open if model_file.suffix == ".gz" else open
    with opener(model_file, "rt") as fh:
        model = json.load(fh)
    for operation, shape in shapes.operations().items():
        assert model["operations"][operation]["input"]["shape"] == shape
    for name, shape in shapes.model()["shapes"].items():
        theirs = model["shapes"][name]
        for constraint in ("type", "min", "max", "pattern", "enum", "required"):
            assert shape.get(constraint) == theirs.get(constraint), (name, constraint)
    assert os.path.basename(str(model_file.parent)) == shapes.model()["apiVersion"]


def test_a_data_subject_learns_and_erases_what_collections_hold_about_them(
    server: Server, faces_dir: Path, tmp_path: Path
) -> None:
    """The access package names each collection holding the person's faces under the ids its
    clients use; an erasure takes the memberships with the faces, and its receipt says which."""
    rek = server.client()
    rek.create_collection(CollectionId="subject-rights")
    ids = [
        rek.index_faces(
            CollectionId="subject-rights",
            Image={"Bytes": photo(faces_dir, "Elon_Musk", n)},
            ExternalImageId=f"elon-{n}",
        )["FaceRecords"][0]["Face"]
        for n in (0, 1)
    ]
    rek.create_user(CollectionId="subject-rights", UserId="u-elon")
    rek.associate_faces(CollectionId="subject-rights", UserId="u-elon", FaceIds=[ids[0]["FaceId"]])
    selfie = photo(faces_dir, "Elon_Musk", 2)
    with Engine.open(server.data, workers=1) as engine:
        path, _ = engine.access(engine.review_person(selfie, kind="access"), tmp_path / "p.zip")
        with zipfile.ZipFile(path) as z:
            data = json.loads(z.read("data.json"))
            report = z.read("report.html").decode()
        held = [c for img in data["images"] for f in img["faces"] for c in f["collections"]]
        assert sorted(held, key=lambda c: str(c["ExternalImageId"])) == [
            {
                "CollectionId": "subject-rights",
                "FaceId": face["FaceId"],
                "ImageId": face["ImageId"],
                "ExternalImageId": f"elon-{n}",
                "UserId": "u-elon" if n == 0 else None,
            }
            for n, face in enumerate(ids)
        ]
        assert "Collections that hold your faces" in report and ids[1]["FaceId"] in report

        receipt = engine.erase(engine.find_person(selfie))
        assert receipt.verify(engine.keyring)
        assert receipt.collection_memberships == sorted(
            ({"collection": "subject-rights", "face_id": f["FaceId"]} for f in ids),
            key=lambda c: c["face_id"],
        )
    assert rek.list_faces(CollectionId="subject-rights")["Faces"] == []


def test_users_are_listed_searched_untied_and_deleted(server: Server, faces_dir: Path) -> None:
    """DisassociateFaces, DeleteUser, ListUsers and SearchUsers, each answer checked against
    botocore's model."""
    rek = server.client()
    rek.create_collection(CollectionId="users")

    def index(who: str, n: int) -> str:
        record = rek.index_faces(
            CollectionId="users", Image={"Bytes": photo(faces_dir, who, n)}, MaxFaces=1
        )
        face_id: str = record["FaceRecords"][0]["Face"]["FaceId"]
        return face_id

    mark = [index("Mark_Zuckerberg", n) for n in range(3)]
    scarlett = [index("Scarlett_Johansson", n) for n in range(2)]
    for user, faces in (("mark", mark[:2]), ("scarlett", scarlett)):
        rek.create_user(CollectionId="users", UserId=user)
        rek.associate_faces(CollectionId="users", UserId=user, FaceIds=faces)
    rek.create_user(CollectionId="users", UserId="nobody")

    listed = rek.list_users(CollectionId="users", MaxResults=2)
    checked(rek, "ListUsers", listed, CollectionId="users")
    assert [u["UserId"] for u in listed["Users"]] == ["mark", "nobody"]
    rest = rek.list_users(CollectionId="users", NextToken=listed["NextToken"])
    assert [u["UserId"] for u in rest["Users"]] == ["scarlett"] and "NextToken" not in rest
    code, _, _ = error_of(rek.list_users, CollectionId="users", NextToken="not a token!")
    assert code == "InvalidPaginationTokenException"

    # By a face: Mark's third photo, tied to nobody, finds Mark and not Scarlett.
    by_face = rek.search_users(CollectionId="users", FaceId=mark[2])
    checked(rek, "SearchUsers", by_face, CollectionId="users", FaceId=mark[2])
    assert [m["User"]["UserId"] for m in by_face["UserMatches"]] == ["mark"]
    assert by_face["SearchedFace"] == {"FaceId": mark[2]}
    # By a user: the others like it (itself left out): nobody here.
    by_user = rek.search_users(CollectionId="users", UserId="scarlett")
    checked(rek, "SearchUsers", by_user, CollectionId="users", UserId="scarlett")
    assert by_user["UserMatches"] == [] and by_user["SearchedUser"] == {"UserId": "scarlett"}
    assert rek.search_users(CollectionId="users", UserId="nobody")["UserMatches"] == []
    code, _, _ = error_of(rek.search_users, CollectionId="users")
    assert code == "InvalidParameterException"
    code, _, _ = error_of(rek.search_users, CollectionId="users", UserId="ghost")
    assert code == "ResourceNotFoundException"

    nowhere = "00000000-0000-0000-0000-000000000000"
    untied = rek.disassociate_faces(
        CollectionId="users",
        UserId="mark",
        FaceIds=[mark[0], scarlett[0], mark[2], nowhere],
    )
    checked(rek, "DisassociateFaces", untied, CollectionId="users", UserId="mark", FaceIds=["x"])
    assert untied["DisassociatedFaces"] == [{"FaceId": mark[0]}, {"FaceId": mark[2]}]
    assert {f["FaceId"]: f["Reasons"] for f in untied["UnsuccessfulFaceDisassociations"]} == {
        scarlett[0]: ["ASSOCIATED_TO_A_DIFFERENT_USER"],
        nowhere: ["FACE_NOT_FOUND"],
    }
    assert [f["FaceId"] for f in rek.list_faces(CollectionId="users", UserId="mark")["Faces"]] == [
        mark[1]
    ]

    gone = rek.delete_user(CollectionId="users", UserId="scarlett")
    checked(rek, "DeleteUser", gone, CollectionId="users", UserId="scarlett")
    assert [u["UserId"] for u in rek.list_users(CollectionId="users")["Users"]] == [
        "mark",
        "nobody",
    ]
    # Its faces stay in the collection, tied to nobody; they may be deleted now.
    faces = {f["FaceId"]: f for f in rek.list_faces(CollectionId="users")["Faces"]}
    assert all("UserId" not in faces[f] for f in scarlett)
    assert rek.delete_faces(CollectionId="users", FaceIds=scarlett)["DeletedFaces"] == sorted(
        scarlett
    )
    code, _, _ = error_of(rek.delete_user, CollectionId="users", UserId="scarlett")
    assert code == "ResourceNotFoundException"
    code, _, _ = error_of(
        server.client("elsewhere").delete_user, CollectionId="users", UserId="mark"
    )
    assert code == "AccessDeniedException"


def test_a_retried_request_with_its_token_has_no_second_effect(
    server: Server, faces_dir: Path
) -> None:
    """ClientRequestToken on CreateUser, AssociateFaces, DisassociateFaces and DeleteUser: the
    same token with the same request gets the first answer and changes nothing again; with
    another request it is refused."""
    rek = server.client()
    rek.create_collection(CollectionId="retries")
    face = rek.index_faces(
        CollectionId="retries", Image={"Bytes": photo(faces_dir, "Sundar_Pichai")}, MaxFaces=1
    )["FaceRecords"][0]["Face"]["FaceId"]
    at = {"CollectionId": "retries"}
    # IndexFaces takes no token: sent again, the photo is added once, its face keeps its id.
    resent = rek.index_faces(**at, Image={"Bytes": photo(faces_dir, "Sundar_Pichai")}, MaxFaces=1)
    assert [r["Face"]["FaceId"] for r in resent["FaceRecords"]] == [face]
    assert [f["FaceId"] for f in rek.list_faces(**at)["Faces"]] == [face]

    for _ in range(2):  # a retry of a create that went through is not a conflict
        assert rek.create_user(**at, UserId="sundar", ClientRequestToken="create-1") == {
            "ResponseMetadata": mock.ANY
        }
    code, _, _ = error_of(rek.create_user, **at, UserId="sundar")  # a new request: it is
    assert code == "ConflictException"
    code, _, message = error_of(
        rek.create_user, **at, UserId="other", ClientRequestToken="create-1"
    )
    assert code == "IdempotentParameterMismatchException" and "create-1" in message
    rek.create_collection(CollectionId="retries-2")
    code, _, _ = error_of(
        rek.create_user, CollectionId="retries-2", UserId="sundar", ClientRequestToken="create-1"
    )
    assert code == "IdempotentParameterMismatchException"  # the token names one request
    assert [u["UserId"] for u in rek.list_users(**at)["Users"]] == ["sundar"]

    tie = {**at, "UserId": "sundar", "FaceIds": [face], "ClientRequestToken": "tie-1"}
    first = rek.associate_faces(**tie)
    assert first["AssociatedFaces"] == [{"FaceId": face}]
    rek.disassociate_faces(**at, UserId="sundar", FaceIds=[face], ClientRequestToken="untie-1")
    again = rek.associate_faces(**tie)  # the retry answers as the first did, and ties nothing
    assert again["AssociatedFaces"] == first["AssociatedFaces"]
    assert rek.list_faces(**at, UserId="sundar")["Faces"] == []
    untie = rek.disassociate_faces(
        **at, UserId="sundar", FaceIds=[face], ClientRequestToken="untie-1"
    )
    assert untie["DisassociatedFaces"] == [{"FaceId": face}]

    for _ in range(2):  # the retry of a delete that went through is no ResourceNotFound
        rek.delete_user(**at, UserId="sundar", ClientRequestToken="delete-1")
    code, _, _ = error_of(rek.delete_user, **at, UserId="sundar")
    assert code == "ResourceNotFoundException"
    assert rek.list_users(**at)["Users"] == []
