"""Instant start-up, kept by what is imported and built rather than by a stopwatch: the command
line loads no engine for `--help`, a catalog at head opens without Alembic, and the models
derived from the installed ones are built once and reused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dlib
import numpy as np
from alembic.config import Config
from alembic.script import ScriptDirectory
from PIL import Image
from typer.testing import CliRunner

from vultus.audit import EXPORT_FORMATS
from vultus.catalog.connect import MIGRATIONS, script_heads
from vultus.cli import app
from vultus.engine.apikeys import ROLES
from vultus.pipeline.detect import HOG_FILENAME, frontal_face_detector

SRC = Path(__file__).resolve().parents[1] / "src"
# What `vultus --help` must not pay for: each costs tenths of a second to import.
HEAVY = ("onnx", "alembic", "sqlalchemy", "numpy", "dlib", "vultus.engine.core", "vultus.audit")


def loaded_after(code: str, env: dict[str, str] | None = None) -> set[str]:
    """The top-level and vultus modules a fresh interpreter holds after running `code`."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "PYTHONPATH": str(SRC), **(env or {})},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()[-1]
    return set(json.loads(out))


def test_the_command_line_loads_no_engine_until_a_command_runs() -> None:
    loaded = loaded_after("import vultus.cli")
    assert not [m for m in HEAVY if m in loaded]


def test_help_and_version_answer_without_the_engine(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom vultus.cli import main\nsys.argv = ['vultus', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass"
    )
    loaded = loaded_after(code)
    assert not [m for m in HEAVY if m in loaded]
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("vultus ")


def test_help_texts_name_every_role_and_export_format() -> None:
    # The command line lists them without importing the modules that own them.
    runner = CliRunner(env={"COLUMNS": "200"})
    keys_help = runner.invoke(app, ["keys", "create", "--help"]).output
    assert all(role in keys_help for role in ROLES)
    export_help = runner.invoke(app, ["audit", "export", "--help"]).output
    assert f"One of: {', '.join(EXPORT_FORMATS)}." in export_help


def test_the_migration_head_read_from_the_scripts_is_alembics() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert script_heads() == set(ScriptDirectory.from_config(config).get_heads())


def test_a_catalog_at_head_opens_without_alembic(tmp_path: Path) -> None:
    code = (
        "from vultus.catalog import open_catalog\n"
        f"open_catalog('sqlite:///{tmp_path / 'catalog.db'}').close()"
    )
    assert "alembic" in loaded_after(code)  # created: migrated by Alembic
    assert "alembic" not in loaded_after(code)  # at head: a look at alembic_version


def test_the_hog_detector_is_kept_in_binary_form_and_detects_the_same(
    tmp_path: Path, dev_photos: list[tuple[Path, str]]
) -> None:
    cached = frontal_face_detector(tmp_path)
    assert (tmp_path / HOG_FILENAME).is_file()
    built = dlib.get_frontal_face_detector()
    for photo, _ in dev_photos[:8]:
        with Image.open(photo) as im:
            rgb = np.asarray(im.convert("RGB"))
        ours, theirs = cached.run(rgb, 0, 0.0), built.run(rgb, 0, 0.0)
        assert [str(r) for r in ours[0]] == [str(r) for r in theirs[0]]
        assert ours[1] == theirs[1]
    # Damaged: rebuilt, not trusted.
    (tmp_path / HOG_FILENAME).write_bytes(b"not a detector")
    assert len(frontal_face_detector(tmp_path).run(rgb, 0, 0.0)[0]) == len(theirs[0])
