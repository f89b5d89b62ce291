"""The Rekognition operations Vultus serves, each a thin call into the Engine's collections.

Who may call what: a key's role admits the operation (operators manage collections and add
faces; investigators search and compare), and every operation needs a key bound to a purpose,
since no Rekognition call can state one; adding photos needs a key bound to a source too, the
source (and lawful basis) of every photo the collection holds. See docs/compat.md."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any

from vultus.api.compat.rekognition.mapping import (
    MATCH_SIMILARITY,
    bounding_box,
    confidence,
    face_detail,
    similarity,
    unindexed_reason,
)
from vultus.config import Settings
from vultus.engine import Engine
from vultus.engine.apikeys import Principal
from vultus.engine.collections import CollectionSearch
from vultus.engine.records import Member

if TYPE_CHECKING:
    from vultus.pipeline.analyse import AnalysedFace

ACCOUNT = "000000000000"  # ARNs name an account; a Vultus server is one
PAGE = 1000
SEARCH_LIMIT = 4096
USER_MATCH_THRESHOLD = 75.0  # Rekognition's default for AssociateFaces
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
COLLECTION = re.compile(r"[a-zA-Z0-9_.\-]{1,255}")


class AwsError(Exception):
    def __init__(self, aws_type: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.aws_type = aws_type
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Call:
    engine: Engine
    principal: Principal
    region: str
    settings: Settings

    @property
    def actor(self) -> str:
        return self.principal.actor

    @property
    def purpose(self) -> str:
        assert self.principal.purpose is not None  # checked before any operation runs
        return self.principal.purpose

    @property
    def source(self) -> str:
        if self.principal.source is None:
            raise AwsError(
                "AccessDeniedException",
                f"key {self.principal.name!r} is bound to no source: photos it adds would have "
                "no lawful basis. Create the key with --source SOURCE",
            )
        return self.principal.source

    def model_version(self) -> str:
        return self.engine.model_id

    def own(self, collection: str) -> str:
        """A collection the key may manage: one of its bound source, whose photos it adds.
        Searching needs no such tie (the bound purpose governs a search)."""
        held = self.engine.collection(collection).source
        if held != self.source:
            raise AwsError(
                "AccessDeniedException",
                f"collection {collection!r} holds photos of source {held!r}; key "
                f"{self.principal.name!r} is bound to source {self.source!r}",
            )
        return collection


Handler = Callable[[Call, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Operation:
    handler: Handler
    roles: frozenset[str]
    searches: bool = False  # counts against the key's daily search cap


OPERATIONS: dict[str, Operation] = {}
# The operations whose ClientRequestToken AWS defines as an idempotency token.
IDEMPOTENT = frozenset({"CreateUser", "AssociateFaces", "DisassociateFaces", "DeleteUser"})


def operation(*roles: str, searches: bool = False) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        OPERATIONS[handler.__name__] = Operation(handler, frozenset(roles), searches)
        return handler

    return register


def run(name: str, call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """Admit the call (role, bound purpose, search cap), then run the operation."""
    op = OPERATIONS[name]
    admitted = call.principal.admitted(op.roles)
    if admitted is None:
        raise AwsError(
            "AccessDeniedException",
            f"key {call.principal.name!r} may not call {name}: it needs the role "
            + " or ".join(sorted(op.roles)),
        )
    if admitted.purpose is None:
        raise AwsError(
            "AccessDeniedException",
            f"key {admitted.name!r} is bound to no purpose, and Rekognition calls cannot state "
            "one. Create the key with --purpose PURPOSE",
        )
    if op.searches:
        call.engine.keys.check_search_cap(admitted)
    call = Call(call.engine, admitted, call.region, call.settings)
    token = params.get("ClientRequestToken")
    if name not in IDEMPOTENT or token is None:
        return op.handler(call, params)
    return call.engine.idempotent_request(
        params["CollectionId"],
        key_name=admitted.name,
        operation=name,
        token=token,
        request={k: v for k, v in params.items() if k != "ClientRequestToken"},
        run=lambda: op.handler(call, params),
    )


def _box(face: AnalysedFace) -> tuple[int, int, int, int]:
    b = face.box
    return b.left, b.top, b.right, b.bottom


def _arn(call: Call, name: str) -> str:
    return f"aws:rekognition:{call.region}:{ACCOUNT}:collection/{name}"


# -- collections ------------------------------------------------------------------------------
@operation("operator")
def CreateCollection(call: Call, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
    call.engine.create_collection(p["CollectionId"], source=call.source, actor=call.actor)
    return {
        "StatusCode": 200,
        "CollectionArn": _arn(call, p["CollectionId"]),
        "FaceModelVersion": call.model_version(),
    }


@operation("operator")
def DeleteCollection(call: Call, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
    call.engine.drop_collection(call.own(p["CollectionId"]), actor=call.actor)
    return {"StatusCode": 200}


@operation("operator")
def DescribeCollection(call: Call, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
    info = call.engine.collection(call.own(p["CollectionId"]))
    return {
        "FaceCount": info.faces,
        "UserCount": info.users,
        "FaceModelVersion": call.model_version(),
        "CollectionARN": _arn(call, info.name),
        "CreationTimestamp": info.created_at.replace(tzinfo=UTC).timestamp(),  # naive UTC
    }


@operation("operator")
def ListCollections(call: Call, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
    token = p.get("NextToken")
    if token is not None and not COLLECTION.fullmatch(token):
        raise AwsError("InvalidPaginationTokenException", "Invalid pagination token")
    limit = p.get("MaxResults") or PAGE
    names = call.engine.collection_names(after=token, limit=limit + 1, source=call.source)
    out: dict[str, Any] = {
        "CollectionIds": names[:limit],
        "FaceModelVersions": [call.model_version()] * len(names[:limit]),
    }
    if len(names) > limit:
        out["NextToken"] = names[limit - 1]
    return out


# -- faces --------------------------------------------------------------------------------------
def _image(p: dict[str, Any], name: str = "Image") -> bytes:
    image = p[name]
    if "S3Object" in image:
        raise AwsError(
            "InvalidS3ObjectException",
            "this server reads no S3 objects through the Rekognition API: send the photo's "
            "Bytes (to index a bucket, use `vultus add s3://...`)",
        )
    if "Bytes" not in image:
        raise AwsError("InvalidParameterException", f"{name} needs Bytes")
    data: bytes = image["Bytes"]
    return data


def _face(member: Member) -> dict[str, Any]:
    width, height = member.image_size
    out: dict[str, Any] = {
        "FaceId": member.uuid,
        "BoundingBox": bounding_box(member.box, width, height),
        "ImageId": member.image_uuid,
        "Confidence": confidence(member.det_score),
    }
    if member.external_image_id is not None:
        out["ExternalImageId"] = member.external_image_id
    if member.user_id is not None:
        out["UserId"] = member.user_id
    return out


@operation("operator")
def IndexFaces(call: Call, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
    # QualityFilter is read and allowed; Vultus's own quality gate applies whatever it says.
    indexed = call.engine.index_photo(
        call.own(p["CollectionId"]),
        _image(p),
        source=call.source,
        external_image_id=p.get("ExternalImageId"),
        max_faces=p.get("MaxFaces"),
        actor=call.actor,
    )
    records, unindexed = [], []
    w, h = indexed.width, indexed.height
    for f in indexed.faces:
        detail = face_detail(f.face.box, f.face.det_score, f.face.landmarks, w, h)
        if f.uuid is None:
            unindexed.append({"Reasons": [unindexed_reason(f.reason or "")], "FaceDetail": detail})
            continue
        face: dict[str, Any] = {
            "FaceId": f.uuid,
            "BoundingBox": detail["BoundingBox"],
            "ImageId": indexed.image_uuid,
            "Confidence": detail["Confidence"],
        }
        if p.get("ExternalImageId") is not None:
            face["ExternalImageId"] = p["ExternalImageId"]
        records.append({"Face": face, "FaceDetail": detail})
    return {
        "FaceRecords": records,
        "FaceModelVersion": call.model_version(),
        "UnindexedFaces": unindexed,
    }


@operation("operator")
def ListFaces(call: Call, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
    token = p.get("NextToken")
    if token is not None and not UUID.fullmatch(token):
        raise AwsError("InvalidPaginationTokenException", "Invalid pagination token")
    limit = p.get("MaxResults") or PAGE
    members = call.engine.collection_faces(
        call.own(p["CollectionId"]),
        after=token,
        limit=limit + 1,
        uuids=p.get("FaceIds"),
        user_id=p.get("UserId"),
    )
    out: dict[str, Any] = {
        "Faces": [_face(m) for m in members[:limit]],
        "FaceModelVersion": call.model_version(),
    }
    if len(members) > limit:
        out["NextToken"] = members[limit - 1].uuid
    return out


@operation("operator")
def DeleteFaces(call: Call, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
    wanted: list[str] = list(dict.fromkeys(p["FaceIds"]))
    name = call.own(p["CollectionId"])
    held = {m.uuid: m for m in call.engine.collection_faces(name, uuids=wanted)}
    removed = call.engine.remove_from_collection(name, wanted, actor=call.actor)
    failed = []
    for face_id in wanted:
        if face_id in removed:
            continue
        member = held.get(face_id)
        if member is not None and member.user_id is not None:
            failed.append(
                {
                    "FaceId": face_id,
                    "UserId": member.user_id,
                    "Reasons": ["ASSOCIATED_TO_AN_EXISTING_USER"],
                }
            )
        else:
            failed.append({"FaceId": face_id, "Reasons": ["FACE_NOT_FOUND"]})
    return {"DeletedFaces": removed, "UnsuccessfulFaceDeletions": failed}


# -- search -------------------------------------------------------------------------------------
def _matches(found: CollectionSearch, threshold: float, limit: int) -> list[dict[str, Any]]:
    result = found.result
    out: list[dict[str, Any]] = []
    for m in result.matches:
        score = similarity(m.distance, result.threshold, result.possible_threshold)
        if score < threshold or result.uncalibrated:
            continue
        out.append({"Similarity": score, "Face": _face(found.members[m.face_id])})
    out.sort(key=lambda x: -float(x["Similarity"]))
    return out[:limit]


def _threshold(p: dict[str, Any], name: str = "FaceMatchThreshold") -> float:
    value = p.get(name)
    return MATCH_SIMILARITY if value is None else float(value)


@operation("investigator", searches=True)
def SearchFacesByImage(call: Call, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
    limit = p.get("MaxFaces") or SEARCH_LIMIT
    found = call.engine.search_collection(
        p["CollectionId"],
        photo=_image(p),
        purpose=call.purpose,
        case_ref=call.principal.case_ref,
        top_k=limit,
        actor=call.actor,
    )
    assert found.query is not None
    return {
        "SearchedFaceBoundingBox": bounding_box(_box(found.query), found.width, found.height),
        "SearchedFaceConfidence": confidence(found.query.quality.det_score),
        "FaceMatches": _matches(found, _threshold(p), limit),
        "FaceModelVersion": call.model_version(),
    }


@operation("investigator", searches=True)
def SearchFaces(call: Call, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
    limit = p.get("MaxFaces") or SEARCH_LIMIT
    found = call.engine.search_collection(
        p["CollectionId"],
        face_uuid=p["FaceId"],
        purpose=call.purpose,
        case_ref=call.principal.case_ref,
        top_k=limit,
        actor=call.actor,
    )
    return {
        "SearchedFaceId": p["FaceId"],
        "FaceMatches": _matches(found, _threshold(p), limit),
        "FaceModelVersion": call.model_version(),
    }


@operation("investigator", searches=True)
def CompareFaces(call: Call, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
    compared = call.engine.compare_photo_faces(
        _image(p, "SourceImage"),
        _image(p, "TargetImage"),
        purpose=call.purpose,
        case_ref=call.principal.case_ref,
        actor=call.actor,
    )
    threshold = _threshold(p, "SimilarityThreshold")
    src, tgt = compared.source, compared.target
    matches: list[dict[str, Any]] = []
    unmatched: list[dict[str, Any]] = []
    usable = {id(f) for f, _ in compared.compared}
    for f, v in compared.compared:
        detail = face_detail(_box(f), f.quality.det_score, f.landmarks, tgt.width, tgt.height)
        score = similarity(v.distance, v.threshold, compared.possible_threshold)
        if score >= threshold:
            matches.append({"Similarity": score, "Face": detail})
        else:
            unmatched.append(detail)
    for f in tgt.faces:
        if id(f) not in usable:
            unmatched.append(
                face_detail(_box(f), f.quality.det_score, f.landmarks, tgt.width, tgt.height)
            )
    matches.sort(key=lambda x: -float(x["Similarity"]))
    face = compared.source_face
    return {
        "SourceImageFace": {
            "BoundingBox": bounding_box(_box(face), src.width, src.height),
            "Confidence": confidence(face.quality.det_score),
        },
        "FaceMatches": matches,
        "UnmatchedFaces": unmatched,
    }


@operation("operator", "investigator")
def DetectFaces(call: Call, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
    # Attributes ALL asks for age, emotions and the like: Vultus estimates none of them, and
    # answers the box, the confidence and the landmarks whatever is asked.
    analysed = call.engine.measure_faces(
        _image(p), purpose=call.purpose, case_ref=call.principal.case_ref, actor=call.actor
    )
    return {
        "FaceDetails": [
            face_detail(_box(f), f.quality.det_score, f.landmarks, analysed.width, analysed.height)
            for f in analysed.faces
        ]
    }


# -- users --------------------------------------------------------------------------------------
@operation("operator")
def CreateUser(call: Call, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
    call.engine.create_collection_user(call.own(p["CollectionId"]), p["UserId"], actor=call.actor)
    return {}


@operation("operator")
def AssociateFaces(call: Call, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
    wanted: list[str] = list(dict.fromkeys(p["FaceIds"]))
    # A face joins a user that has faces only when it looks like them (as Rekognition checks).
    name = call.own(p["CollectionId"])
    points = call.engine.decision_points(1)  # one face against another: a gallery of one
    match, possible = points.match, points.possible
    threshold = p.get("UserMatchThreshold", USER_MATCH_THRESHOLD)
    unlike = {
        face_id: similarity(distance, match, possible)
        for face_id, distance in call.engine.user_distances(name, p["UserId"], wanted).items()
        if similarity(distance, match, possible) < threshold
    }
    wanted = [f for f in wanted if f not in unlike]
    tied, refused = call.engine.associate_faces(name, p["UserId"], wanted, actor=call.actor)
    return {
        "AssociatedFaces": [{"FaceId": f} for f in tied],
        "UnsuccessfulFaceAssociations": [
            {"FaceId": f, "UserId": p["UserId"], "Reasons": [reason]}
            for f, reason in refused.items()
        ]
        + [
            {
                "FaceId": f,
                "UserId": p["UserId"],
                "Confidence": score,
                "Reasons": ["LOW_MATCH_CONFIDENCE"],
            }
            for f, score in unlike.items()
        ],
        "UserStatus": "ACTIVE",
    }


def _user_matches(
    found: CollectionSearch, p: dict[str, Any], *, searched_user: str | None = None
) -> list[dict[str, Any]]:
    """SearchUsers' and SearchUsersByImage's `UserMatches`: each user scores as its best face
    over `UserMatchThreshold`, best first, at most `MaxUsers`; the user searched from is left
    out."""
    best: dict[str, float] = {}
    for match in _matches(found, _threshold(p, "UserMatchThreshold"), SEARCH_LIMIT):
        user = match["Face"].get("UserId")
        if user is not None and user != searched_user and user not in best:
            best[user] = match["Similarity"]
    limit = p.get("MaxUsers") or 500
    return [
        {"Similarity": score, "User": {"UserId": user, "UserStatus": "ACTIVE"}}
        for user, score in list(best.items())[:limit]
    ]


@operation("investigator", searches=True)
def SearchUsersByImage(call: Call, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
    found = call.engine.search_collection(
        p["CollectionId"],
        photo=_image(p),
        purpose=call.purpose,
        case_ref=call.principal.case_ref,
        top_k=SEARCH_LIMIT,
        actor=call.actor,
    )
    query = found.query
    assert query is not None
    w, h = found.width, found.height
    return {
        "UserMatches": _user_matches(found, p),
        "FaceModelVersion": call.model_version(),
        "SearchedFace": {
            "FaceDetail": face_detail(_box(query), query.quality.det_score, query.landmarks, w, h)
        },
        "UnsearchedFaces": [
            {
                "FaceDetails": face_detail(_box(f), f.quality.det_score, f.landmarks, w, h),
                "Reasons": ["FACE_NOT_LARGEST"],
            }
            for f in found.faces[1:]
        ],
    }


@operation("operator")
def DisassociateFaces(call: Call, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
    wanted: list[str] = list(dict.fromkeys(p["FaceIds"]))
    untied, refused = call.engine.disassociate_faces(
        call.own(p["CollectionId"]), p["UserId"], wanted, actor=call.actor
    )
    return {
        "DisassociatedFaces": [{"FaceId": f} for f in untied],
        "UnsuccessfulFaceDisassociations": [
            {"FaceId": f, "UserId": p["UserId"], "Reasons": [reason]}
            for f, reason in refused.items()
        ],
        "UserStatus": "ACTIVE",
    }


@operation("operator")
def DeleteUser(call: Call, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
    call.engine.delete_collection_user(call.own(p["CollectionId"]), p["UserId"], actor=call.actor)
    return {}


USER = re.compile(r"[a-zA-Z0-9_.\-:]{1,128}")


@operation("operator")
def ListUsers(call: Call, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
    token = p.get("NextToken")
    if token is not None and not USER.fullmatch(token):
        raise AwsError("InvalidPaginationTokenException", "Invalid pagination token")
    limit = p.get("MaxResults") or 500
    users = call.engine.collection_users(call.own(p["CollectionId"]), after=token, limit=limit + 1)
    out: dict[str, Any] = {"Users": [{"UserId": u, "UserStatus": "ACTIVE"} for u in users[:limit]]}
    if len(users) > limit:
        out["NextToken"] = users[limit - 1]
    return out


@operation("investigator", searches=True)
def SearchUsers(call: Call, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
    """By a face of the collection (`FaceId`) or by one of its users (`UserId`: its faces
    together, the user itself left out of the answer); each user scores as its best face."""
    if ("FaceId" in p) == ("UserId" in p):
        raise AwsError("InvalidParameterException", "give either FaceId or UserId: one of them")
    found = call.engine.search_collection(
        p["CollectionId"],
        face_uuid=p.get("FaceId"),
        user_id=p.get("UserId"),
        purpose=call.purpose,
        case_ref=call.principal.case_ref,
        top_k=SEARCH_LIMIT,
        actor=call.actor,
    )
    out: dict[str, Any] = {
        "UserMatches": _user_matches(found, p, searched_user=p.get("UserId")),
        "FaceModelVersion": call.model_version(),
    }
    if "FaceId" in p:
        out["SearchedFace"] = {"FaceId": p["FaceId"]}
    else:
        out["SearchedUser"] = {"UserId": p["UserId"]}
    return out
