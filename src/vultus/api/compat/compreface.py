"""The CompreFace REST API under `/api/v1`, so that CompreFace's clients (its SDKs, and code
written against its documentation) work against Vultus unchanged: docs/compat.md.

A sub-application: its errors are CompreFace's (`{"message", "code"}` with CompreFace's numeric
codes: 28 for a photo without a face), its routes stay out of Vultus's OpenAPI document, and its
shapes are CompreFace's, not Vultus's.

What a CompreFace call becomes:

- The `x-api-key` header carries a Vultus key, whose roles admit the route as on `/v1`:
  operator for subjects and examples, investigator for recognition and verification (counted
  against the key's daily search cap), either for detection. CompreFace's clients cannot state
  a purpose, so a key without a bound purpose is refused here, and one without a bound source is
  refused where it adds examples (`vultus keys create ... --purpose P --source S`).
- A subject is a Vultus subject (a named person); an example is a face linked to one, its
  `image_id` the face's id written as a UUID. Adding an example keeps the photo under the key's
  source, like an upload, and links its largest face. A key lists and deletes only the examples
  from its own source; a subject goes when no face is left linked to it.
- Recognition searches the whole gallery, one audited search per face, under the key's purpose
  and case; verification is audited as a verification. The similarity is Vultus's calibrated
  decision read on CompreFace's scale (api/compat/similarity.py): 0.8 is the match threshold.
- Restricted and erased faces are never listed, compared or shown.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from vultus.api.bodies import PhotoBody, PhotoRequest
from vultus.api.compat.similarity import (
    detection_probability,
    min_det_score,
    similarity,
)
from vultus.api.deps import Require, api_key_header, bearer, get_engine
from vultus.api.errors import UnknownFieldError, UploadTooLargeError
from vultus.engine import Engine
from vultus.engine.apikeys import Principal
from vultus.engine.examples import FaceAnswer
from vultus.errors import (
    AuthError,
    ConfigError,
    DecodeError,
    ForbiddenError,
    NoFaceError,
    NotFoundError,
    RateLimitError,
    VultusError,
)
from vultus.search.results import SearchResult

PREFIX = "/api/v1"

# CompreFace's error codes (its CommonExceptionCode), for the errors Vultus can meet.
UNDEFINED = 0
EMPTY_REQUIRED_FIELD = 5
MODEL_NOT_FOUND = 10
IMAGE_NOT_FOUND = 11
MISSING_REQUEST_HEADER = 20
UNAVAILABLE_FILE_EXTENSION = 21
VALIDATION_CONSTRAINT_VIOLATION = 26
NO_FACES_FOUND = 28
MISSING_REQUEST_PARAMETER = 33
MISSING_REQUEST_PART = 34
INCORRECT_ARGUMENT = 36
FACES_SERVICE_EXCEPTION = 41
SUBJECT_NOT_FOUND = 42
SUBJECT_ALREADY_EXISTS = 43
EMBEDDING_NOT_FOUND = 44
# The message clients special-case (they match it, or the code 28).
NO_FACE_MESSAGE = "No face is found in the given image"

# The plugins CompreFace's servers may run. Vultus serves `landmarks`; the others are left out
# of the answer, as CompreFace leaves out a plugin its server does not run. `calculator` would
# hand out face templates, biometric data Vultus keeps encrypted: it is never served.
PLUGINS = frozenset({"landmarks", "calculator", "age", "gender", "mask", "pose"})


class CompreFaceError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


# -- the key, and what it is bound to ----------------------------------------------------------
class BoundKey(Require):
    """`Require`, and the key's bindings: a purpose always (CompreFace's clients cannot state
    one), a source where the route adds photos."""

    def __init__(self, *roles: str, counts_search: bool = False, adds: bool = False) -> None:
        super().__init__(*roles, counts_search=counts_search)
        self.adds = adds

    def __call__(
        self,
        request: Request,
        api_key: Annotated[str | None, Security(api_key_header)] = None,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None,
    ) -> Principal:
        if not api_key and not credentials:
            raise CompreFaceError(
                400, MISSING_REQUEST_HEADER, "Missing header: x-api-key (a Vultus API key)"
            )
        principal = super().__call__(request, api_key, credentials)
        if principal.purpose is None:
            raise ForbiddenError(
                f"key {principal.name!r} is bound to no purpose, and CompreFace's clients cannot "
                "state one; make a key bound to one: vultus keys create --purpose ...",
                code="purpose_unbound",
            )
        if self.adds and principal.source is None:
            raise ForbiddenError(
                f"key {principal.name!r} is bound to no source, so the photos it would add have "
                "no lawful basis; make a key bound to one: vultus keys create --source ...",
                code="source_unbound",
            )
        return principal


Operator = Annotated[Principal, Depends(BoundKey("operator"))]
Adder = Annotated[Principal, Depends(BoundKey("operator", adds=True))]
Searcher = Annotated[Principal, Depends(BoundKey("investigator", counts_search=True))]
Detector = Annotated[Principal, Depends(BoundKey("operator", "investigator"))]
EngineDep = Annotated[Engine, Depends(get_engine)]


class NoFields(BaseModel):
    model_config = ConfigDict(extra="forbid")


file_body = PhotoBody("CompreFaceFile", NoFields, {"file": "The photo."}, document=False)
pair_body = PhotoBody(
    "CompreFacePair",
    NoFields,
    {"source_image": "The photo to check.", "target_image": "The reference photo."},
    document=False,
)
FileBody = Annotated[PhotoRequest[NoFields], Depends(file_body)]
PairBody = Annotated[PhotoRequest[NoFields], Depends(pair_body)]

# Query parameters, as CompreFace names them.
Limit = Annotated[int, Query(ge=0, le=1000, description="The largest faces to use; 0: all.")]
DetProb = Annotated[float | None, Query(ge=0.0, le=1.0)]
Plugins = Annotated[str, Query(max_length=200)]
Status = Annotated[bool, Query()]
Predictions = Annotated[int, Query(ge=0, le=100)]


async def refuse_unknown_query(request: Request) -> None:
    """A query parameter the route does not take is refused (400, code 36), as Vultus refuses
    unknown fields: a typo'd `limt=1` must not quietly answer for every face."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known: list[str] = []
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        known += [p.alias for p in dependant.query_params]
        stack.extend(dependant.dependencies)
    unknown = sorted(set(request.query_params) - set(known))
    if unknown:
        # Raised by the key's check once the caller is admitted (see `Require`): a caller
        # without a valid key learns only that.
        request.state.refused = UnknownFieldError(
            f"unknown parameter {', '.join(unknown)}; {request.url.path} takes "
            f"{', '.join(known) or 'none'}"
        )


router = APIRouter(dependencies=[Depends(refuse_unknown_query)])


# -- the app -----------------------------------------------------------------------------------
def create(host: FastAPI) -> FastAPI:
    """The sub-application, sharing the host's engine, settings and rate limiter."""
    app = FastAPI(
        title="CompreFace-compatible API", docs_url=None, redoc_url=None, openapi_url=None
    )
    for name in ("engine", "settings", "limiter"):
        setattr(app.state, name, getattr(host.state, name))
    app.add_exception_handler(CompreFaceError, _compreface_error)  # type: ignore[arg-type]
    app.add_exception_handler(VultusError, _vultus_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.include_router(router)
    return app


def _body(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message, "code": code}, status_code=status)


async def _compreface_error(_: Request, exc: CompreFaceError) -> JSONResponse:
    return _body(exc.status, exc.code, exc.message)


async def _vultus_error(_: Request, exc: VultusError) -> JSONResponse:
    status, code = _status_of(exc)
    message = NO_FACE_MESSAGE if isinstance(exc, NoFaceError) else exc.message
    return _body(status, code, message)


def _status_of(exc: VultusError) -> tuple[int, int]:
    if isinstance(exc, NoFaceError):
        return 400, NO_FACES_FOUND
    if isinstance(exc, AuthError):
        return 401, MODEL_NOT_FOUND  # CompreFace finds its collection by the key
    if isinstance(exc, ForbiddenError):
        return 403, UNDEFINED
    if isinstance(exc, RateLimitError):
        return 429, UNDEFINED
    if isinstance(exc, UploadTooLargeError):
        return 413, VALIDATION_CONSTRAINT_VIOLATION
    if isinstance(exc, UnknownFieldError):
        return 400, INCORRECT_ARGUMENT
    if isinstance(exc, NotFoundError):
        if exc.code == "example_not_found":
            return 404, IMAGE_NOT_FOUND
        return 404, SUBJECT_NOT_FOUND if "subject" in exc.message else IMAGE_NOT_FOUND
    if isinstance(exc, DecodeError):
        return 400, UNAVAILABLE_FILE_EXTENSION
    if isinstance(exc, ConfigError) and exc.code == "exists":
        return 400, SUBJECT_ALREADY_EXISTS
    if exc.code in {"embedding_invalid", "whole_image_unsupported"}:
        return 400, INCORRECT_ARGUMENT
    if exc.code in {"index_error", "model_error", "wrong_key"}:
        return 500, FACES_SERVICE_EXCEPTION
    return 400, UNDEFINED


async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    where = [str(p) for p in first.get("loc", ())]
    name = where[-1] if where else "request"
    if first.get("type") == "missing":
        code = MISSING_REQUEST_PARAMETER if where[:1] == ["query"] else MISSING_REQUEST_PART
        if where[:1] == ["body"] and len(where) == 1:
            code = EMPTY_REQUIRED_FIELD
        return _body(400, code, f"Required parameter '{name}' is not present")
    return _body(400, VALIDATION_CONSTRAINT_VIOLATION, f"{name}: {first.get('msg', 'invalid')}")


async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
    code = IMAGE_NOT_FOUND if exc.status_code == 404 else UNDEFINED
    status = 400 if exc.status_code == 415 else exc.status_code
    return _body(status, code, str(exc.detail))


# -- ids, boxes, plugins -----------------------------------------------------------------------
def image_id(face_id: int) -> str:
    """A face's id as CompreFace writes an example's: a UUID (the id is its integer)."""
    return str(uuid.UUID(int=face_id))


def face_id_of(value: str) -> int:
    """The face id an example's `image_id` names (a UUID from `image_id`, or the plain id)."""
    try:
        number = int(value) if value.isdigit() else uuid.UUID(value).int
    except ValueError:
        number = 0
    if not 1 <= number < 2**63:
        raise CompreFaceError(404, IMAGE_NOT_FOUND, f"Image with id {value} not found")
    return number


def plugins_of(text: str) -> set[str]:
    chosen = {p.strip() for p in text.split(",") if p.strip()}
    unknown = chosen - PLUGINS
    if unknown:
        raise CompreFaceError(
            400,
            INCORRECT_ARGUMENT,
            f"unknown face plugin {', '.join(sorted(unknown))}; CompreFace's are "
            f"{', '.join(sorted(PLUGINS))}",
        )
    return chosen


def face_json(
    answer: FaceAnswer, plugins: set[str], status: bool, elapsed_ms: float
) -> dict[str, Any]:
    face = answer.face
    out: dict[str, Any] = {
        "box": {
            "probability": detection_probability(face.det_score),
            "x_max": int(face.box.right),
            "y_max": int(face.box.bottom),
            "x_min": int(face.box.left),
            "y_min": int(face.box.top),
        }
    }
    if "landmarks" in plugins:
        out["landmarks"] = [[round(x), round(y)] for x, y in answer.landmarks]
    if status:
        out["execution_time"] = {"detector": round(elapsed_ms, 1)}
    return out


def plugins_versions(engine: Engine, plugins: set[str]) -> dict[str, str]:
    versions = {"detector": f"vultus.{engine.settings.detector}", "calculator": engine.model_id}
    if "landmarks" in plugins:
        versions["landmarks"] = "vultus.five-point"
    return versions


def _elapsed(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def _subjects_of(result: SearchResult, count: int) -> list[dict[str, Any]]:
    """The subjects of a search's matches, nearest first, each once, with its similarity."""
    seen: dict[str, float] = {}
    for match in result.matches:
        if match.subject is None or match.subject in seen:
            continue
        if result.uncalibrated is not None:
            seen[match.subject] = round(max(0.0, match.similarity), 5)
        else:
            seen[match.subject] = similarity(
                match.distance, result.threshold, result.possible_threshold
            )
    ranked = sorted(seen.items(), key=lambda kv: -kv[1])
    return [{"subject": s, "similarity": v} for s, v in ranked[: count or None]]


# -- subjects ----------------------------------------------------------------------------------
class SubjectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str = Field(min_length=1, max_length=200)
    # The official Python SDK sends the old name along with a rename; it is the path's.
    api_endpoint: str | None = Field(None, max_length=200)


SUBJECTS = "/recognition/subjects"


@router.post(SUBJECTS, status_code=201)
def add_subject(body: SubjectIn, engine: EngineDep, principal: Operator) -> dict[str, Any]:
    engine.create_subject(body.subject, actor=principal.actor)
    return {"subject": body.subject}


@router.put(SUBJECTS + "/{subject}")
def rename_subject(
    subject: str, body: SubjectIn, engine: EngineDep, principal: Operator
) -> dict[str, Any]:
    """A rename; onto a name in use, a merge (the old subject's faces move to it)."""
    engine.subject(subject)
    if body.subject == subject:
        return {"updated": False}
    names = {s.name for s, _ in engine.subjects()}
    if body.subject in names:
        engine.merge_subjects(body.subject, subject, actor=principal.actor)
    else:
        engine.rename_subject(subject, body.subject, actor=principal.actor)
    return {"updated": True}


@router.delete(SUBJECTS + "/{subject}")
def delete_subject(subject: str, engine: EngineDep, principal: Adder) -> dict[str, Any]:
    engine.delete_subject_examples(subject, source=principal.source, actor=principal.actor)
    return {"subject": subject}


@router.delete(SUBJECTS)
def delete_all_subjects(engine: EngineDep, principal: Adder) -> dict[str, Any]:
    deleted = 0
    for subject, _ in engine.subjects():
        _, gone = engine.delete_subject_examples(
            subject.name, source=principal.source, actor=principal.actor
        )
        deleted += gone
    return {"deleted": deleted}


@router.get(SUBJECTS)
@router.get(SUBJECTS + "/", include_in_schema=False)
def list_subjects(engine: EngineDep, _: Operator) -> dict[str, Any]:
    return {"subjects": [s.name for s, _ in engine.subjects()]}


# -- examples ----------------------------------------------------------------------------------
FACES = "/recognition/faces"


@router.post(FACES, status_code=201)
def add_example(
    engine: EngineDep,
    principal: Adder,
    body: FileBody,
    subject: Annotated[str, Query(min_length=1, max_length=200)],
    det_prob_threshold: DetProb = None,
) -> dict[str, Any]:
    assert principal.source is not None  # BoundKey(adds=True) saw to it
    photo = body.photos["file"]
    record = engine.add_example(
        photo.data,
        photo.filename,
        subject=subject,
        source=principal.source,
        min_det_score=min_det_score(det_prob_threshold),
        actor=principal.actor,
    )
    return {"image_id": image_id(record.face_id), "subject": subject}


@router.get(FACES)
def list_examples(
    engine: EngineDep,
    principal: Operator,
    page: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    size: Annotated[int, Query(ge=1, le=1000)] = 20,
    subject: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    records, total = engine.examples(
        subject=subject or None, source=principal.source, offset=page * size, limit=size
    )
    return {
        "faces": [{"image_id": image_id(r.face_id), "subject": r.subject} for r in records],
        "page_number": page,
        "page_size": size,
        "total_pages": (total + size - 1) // size,
        "total_elements": total,
    }


@router.delete(FACES)
def delete_examples_of_subject(
    engine: EngineDep,
    principal: Adder,
    subject: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """All the examples of `subject`, or without it all the key's examples."""
    names = [subject] if subject else [s.name for s, _ in engine.subjects()]
    deleted = 0
    for name in names:
        ids = [f.face_id for f in engine.subject_faces(name)]
        deleted += len(engine.delete_examples(ids, source=principal.source, actor=principal.actor))
    return {"deleted": deleted}


@router.delete(FACES + "/{image_id}")
def delete_example(
    engine: EngineDep, principal: Adder, image_id: Annotated[str, Path(max_length=64)]
) -> dict[str, Any]:
    face_id = face_id_of(image_id)
    deleted = engine.delete_examples([face_id], source=principal.source, actor=principal.actor)
    if not deleted:
        raise CompreFaceError(404, IMAGE_NOT_FOUND, f"Image with id {image_id} not found")
    return {"image_id": image_id, "subject": deleted[0].subject}


@router.post(FACES + "/delete")
def delete_examples_by_id(
    engine: EngineDep,
    principal: Adder,
    ids: Annotated[list[Annotated[str, Field(max_length=64)]], Body(max_length=1000)],
) -> list[dict[str, Any]]:
    """Several examples at once; ids not found are passed over, as CompreFace does."""
    wanted: dict[int, str] = {}
    for value in ids:
        try:
            wanted[face_id_of(value)] = value
        except CompreFaceError:
            continue
    deleted = engine.delete_examples(list(wanted), source=principal.source, actor=principal.actor)
    return [{"image_id": wanted[r.face_id], "subject": r.subject} for r in deleted]


@router.get(FACES + "/{image_id}/img")
def example_image(
    engine: EngineDep, principal: Operator, image_id: Annotated[str, Path(max_length=64)]
) -> Response:
    """The photo an example came from; the view is audited."""
    record = engine.example(face_id_of(image_id))
    data, media_type = engine.image_data(record.image_id, actor=principal.actor)
    return Response(data, media_type=media_type, headers={"Cache-Control": "private, no-store"})


# -- recognition and verification --------------------------------------------------------------
@router.post("/recognition/recognize")
def recognize(
    engine: EngineDep,
    principal: Searcher,
    body: FileBody,
    limit: Limit = 0,
    prediction_count: Predictions = 1,
    det_prob_threshold: DetProb = None,
    face_plugins: Plugins = "",
    status: Status = False,
    detect_faces: Annotated[bool, Query()] = True,
) -> dict[str, Any]:
    plugins = plugins_of(face_plugins)
    start = time.perf_counter()
    assert principal.purpose is not None
    answers = engine.recognise(
        body.photos["file"].data,
        purpose=principal.purpose,
        case_ref=principal.case_ref,
        limit=limit,
        top_k=min(100, max(10, prediction_count * 10)),
        min_det_score=min_det_score(det_prob_threshold),
        whole_image=not detect_faces,
        actor=principal.actor,
    )
    if not answers:
        raise NoFaceError(NO_FACE_MESSAGE)
    elapsed = _elapsed(start) / len(answers)
    result = []
    for answer in answers:
        assert answer.search is not None
        out = face_json(answer, plugins, status, elapsed)
        out["subjects"] = _subjects_of(answer.search, prediction_count)
        result.append(out)
    return _with_versions({"result": result}, engine, plugins, status)


@router.post(FACES + "/{image_id}/verify")
def verify_example(
    engine: EngineDep,
    principal: Searcher,
    body: FileBody,
    image_id: Annotated[str, Path(max_length=64)],
    limit: Limit = 0,
    det_prob_threshold: DetProb = None,
    face_plugins: Plugins = "",
    status: Status = False,
) -> dict[str, Any]:
    plugins = plugins_of(face_plugins)
    start = time.perf_counter()
    assert principal.purpose is not None
    answers = engine.verify_example(
        face_id_of(image_id),
        body.photos["file"].data,
        purpose=principal.purpose,
        case_ref=principal.case_ref,
        limit=limit,
        min_det_score=min_det_score(det_prob_threshold),
        actor=principal.actor,
    )
    if not answers:
        raise NoFaceError(NO_FACE_MESSAGE)
    result = _verified_json(engine, answers, plugins, status, _elapsed(start) / len(answers))
    return _with_versions({"result": result}, engine, plugins, status)


@router.post("/verification/verify")
def verify_photos(
    engine: EngineDep,
    principal: Searcher,
    body: PairBody,
    limit: Limit = 0,
    prediction_count: Predictions = 1,
    det_prob_threshold: DetProb = None,
    face_plugins: Plugins = "",
    status: Status = False,
) -> dict[str, Any]:
    """The largest face of `source_image` against every face of `target_image`."""
    plugins = plugins_of(face_plugins)
    start = time.perf_counter()
    assert principal.purpose is not None
    source, matches = engine.compare_photos(
        body.photos["source_image"].data,
        body.photos["target_image"].data,
        purpose=principal.purpose,
        case_ref=principal.case_ref,
        limit=limit,
        min_det_score=min_det_score(det_prob_threshold),
        actor=principal.actor,
    )
    if not matches:
        raise NoFaceError(NO_FACE_MESSAGE)
    elapsed = _elapsed(start) / (len(matches) + 1)
    face_matches = _verified_json(engine, matches, plugins, status, elapsed)
    face_matches.sort(key=lambda m: -float(m["similarity"]))
    item: dict[str, Any] = {
        "source_image_face": face_json(source, plugins, status, elapsed),
        "face_matches": face_matches,
    }
    if status:
        item["plugins_versions"] = plugins_versions(engine, plugins)
    return {"result": [item]}


def _verified_json(
    engine: Engine, answers: Sequence[FaceAnswer], plugins: set[str], status: bool, elapsed: float
) -> list[dict[str, Any]]:
    """Each face, with CompreFace's similarity to the face it was verified against."""
    points = engine.decision_points(1)
    result = []
    for answer in answers:
        assert answer.verification is not None
        out = face_json(answer, plugins, status, elapsed)
        out["similarity"] = similarity(answer.verification.distance, points.match, points.possible)
        result.append(out)
    return result


@router.post("/detection/detect")
def detect(
    engine: EngineDep,
    _: Detector,
    body: FileBody,
    limit: Limit = 0,
    det_prob_threshold: DetProb = None,
    face_plugins: Plugins = "",
    status: Status = False,
) -> dict[str, Any]:
    plugins = plugins_of(face_plugins)
    start = time.perf_counter()
    answers = engine.detect_faces(
        body.photos["file"].data, limit=limit, min_det_score=min_det_score(det_prob_threshold)
    )
    if not answers:
        raise NoFaceError(NO_FACE_MESSAGE)
    elapsed = _elapsed(start) / len(answers)
    result = [face_json(a, plugins, status, elapsed) for a in answers]
    return _with_versions({"result": result}, engine, plugins, status)


def _with_versions(
    answer: dict[str, Any], engine: Engine, plugins: set[str], status: bool
) -> dict[str, Any]:
    if status:
        answer["plugins_versions"] = plugins_versions(engine, plugins)
    return answer


# -- embeddings --------------------------------------------------------------------------------
class EmbeddingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    embeddings: list[list[float]] = Field(min_length=1, max_length=100)


class SourceTargetsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: list[float]
    targets: list[list[float]] = Field(min_length=1, max_length=100)


@router.post("/recognition/embeddings/recognize")
def recognize_embeddings(
    body: EmbeddingsIn,
    engine: EngineDep,
    principal: Searcher,
    prediction_count: Predictions = 1,
) -> dict[str, Any]:
    """Embeddings the client computed with the same model (for Vultus's dlib models,
    `face_recognition.face_encodings`)."""
    assert principal.purpose is not None
    results = engine.recognise_embeddings(
        body.embeddings,
        purpose=principal.purpose,
        case_ref=principal.case_ref,
        top_k=min(100, max(10, prediction_count * 10)),
        actor=principal.actor,
    )
    return {
        "result": [
            {"embedding": e, "similarities": _subjects_of(r, prediction_count)}
            for e, r in zip(body.embeddings, results, strict=True)
        ]
    }


@router.post("/recognition/embeddings/faces/{image_id}/verify")
def verify_embeddings_with_example(
    body: EmbeddingsIn,
    engine: EngineDep,
    principal: Searcher,
    image_id: Annotated[str, Path(max_length=64)],
) -> dict[str, Any]:
    return _verified(engine, principal, face_id_of(image_id), body.embeddings)


@router.post("/verification/embeddings/verify")
def verify_embeddings(
    body: SourceTargetsIn, engine: EngineDep, principal: Searcher
) -> dict[str, Any]:
    return _verified(engine, principal, body.source, body.targets)


def _verified(
    engine: Engine,
    principal: Principal,
    source: Sequence[float] | int,
    targets: Sequence[Sequence[float]],
) -> dict[str, Any]:
    assert principal.purpose is not None
    results = engine.verify_embeddings(
        source,
        targets,
        purpose=principal.purpose,
        case_ref=principal.case_ref,
        actor=principal.actor,
    )
    points = engine.decision_points(1)
    rows: Iterable[tuple[Sequence[float], Any]] = zip(targets, results, strict=True)
    return {
        "result": [
            {
                "embedding": list(t),
                "similarity": similarity(r.distance, points.match, points.possible),
            }
            for t, r in rows
        ]
    }
