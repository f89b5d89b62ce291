"""Settings an admin changes while Vultus runs: who the controller is, whether the rights
portal is open, the purposes a search may state, and the false-match rates that decide
matches. Without this they need `vultus.toml` and a restart.

They are stored in the catalog and override the file (and the environment): at once on the
engine that saves them, and in every process that opens this catalog afterwards; each change
is audited with its old and new value. Only these
settings: the others (paths, index, model) change what the data directory is, and stay in the
file.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vultus import audit as actions
from vultus.config import Settings
from vultus.engine.parts import EngineParts
from vultus.errors import ConfigError

OVERRIDES_KEY = "settings_overrides"


def _rate(text: str) -> float:
    value = float(text)
    if not 0 < value < 1 or not math.isfinite(value):
        raise ValueError("a rate between 0 and 1, such as 0.001")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0 or not math.isfinite(value):
        raise ValueError("a number above 0")
    return value


def _not_negative(text: str) -> float:
    value = float(text)
    if not value >= 0 or not math.isfinite(value):
        raise ValueError("a number, 0 or more")
    return value


def _flag(text: str) -> bool:
    if text.lower() in {"true", "yes", "on", "1"}:
        return True
    if text.lower() in {"false", "no", "off", "0", ""}:
        return False
    raise ValueError("yes or no")


def _purposes(text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("at least one purpose, one a line")
    if any(len(line) > 200 for line in lines):
        raise ValueError("purposes of at most 200 characters")
    return list(dict.fromkeys(lines))


def _controller(text: str) -> str:
    if len(text.strip()) > 500:
        raise ValueError("at most 500 characters")
    return text.strip()


def _query_detection(text: str) -> str:
    if text not in {"standard", "thorough"}:
        raise ValueError('"standard" or "thorough"')
    return text


@dataclass(frozen=True)
class Editable:
    label: str
    parse: Callable[[str], Any]
    help: str


# In the order the admin's page shows them.
EDITABLE: dict[str, Editable] = {
    "controller": Editable(
        "Controller", _controller, "Who is responsible, and how to reach them (portal, reports)."
    ),
    "portal_enabled": Editable(
        "Rights portal open", _flag, "Data subjects may send requests at /portal."
    ),
    "purposes": Editable("Purposes", _purposes, "One a line: every search states one of them."),
    "search_fmr": Editable(
        "Search false-match rate",
        _rate,
        "Chance per search that a stranger is called a match.",
    ),
    "search_margin": Editable(
        "Subject margin", _not_negative, "Distance a subject must lead by (0: never flagged)."
    ),
    "rights_fmr": Editable(
        "Rights review false-match rate", _rate, "Chance per request of a stranger ticked."
    ),
    "possible_fmr": Editable(
        "Possible-match rate", _rate, "Per pair: how far below a match to show faces by eye."
    ),
    "possible_strangers": Editable(
        "Strangers shown at most", _positive, "Expected strangers per search among possibles."
    ),
    "suppression_fmr": Editable(
        "Suppression false-match rate", _rate, "Ingest refuses faces this close to an erased one."
    ),
    "query_detection": Editable(
        "Query photo detection",
        _query_detection,
        '"thorough" (HOG and MMOD) or "standard" (the ingest detector).',
    ),
}


def file_values(settings: Settings) -> dict[str, Any]:
    """The editable settings as `vultus.toml`, the environment or the defaults gave them
    (before the overrides): what "reset to vultus.toml" brings back."""
    return {name: copy.deepcopy(getattr(settings, name)) for name in EDITABLE}


def apply_overrides(settings: Settings, stored: str | None) -> dict[str, Any]:
    """Set the stored overrides on `settings`; returns them."""
    overrides: dict[str, Any] = json.loads(stored) if stored else {}
    for name, value in overrides.items():
        if name in EDITABLE:
            setattr(settings, name, value)
    return overrides


class Administering(EngineParts):
    def settings_overrides(self) -> dict[str, Any]:
        """The settings changed in the UI (stored in the catalog): they override the file."""
        stored = self.catalog.get_meta(OVERRIDES_KEY)
        return {k: v for k, v in (json.loads(stored) if stored else {}).items() if k in EDITABLE}

    def update_settings(
        self, changes: Mapping[str, str], *, actor: str | None = None
    ) -> dict[str, dict[str, Any]]:
        """Change editable settings from their text (as a form sends them), all or none:
        stored in the catalog, set on this engine's settings at once, and audited with each
        old and new value. Returns what changed ({name: {"from": ..., "to": ...}})."""
        parsed: dict[str, Any] = {}
        problems = []
        for name, text in changes.items():
            editable = EDITABLE.get(name)
            if editable is None:
                problems.append(f"{name} cannot be changed here")
                continue
            try:
                parsed[name] = editable.parse(str(text).strip())
            except ValueError as exc:
                problems.append(f"{editable.label}: {exc}")
        if problems:
            raise ConfigError("; ".join(problems), code="setting_invalid")
        portal = parsed.get("portal_enabled", self.settings.portal_enabled)
        if portal and not parsed.get("controller", self.settings.controller):
            raise ConfigError(
                "the rights portal names the controller to people: set the controller first",
                code="controller_unset",
            )
        changed = {
            name: {"from": getattr(self.settings, name), "to": value}
            for name, value in parsed.items()
            if getattr(self.settings, name) != value
        }
        if not changed:
            return {}
        overrides = self.settings_overrides()
        overrides.update({name: c["to"] for name, c in changed.items()})
        self.catalog.set_meta(OVERRIDES_KEY, json.dumps(overrides, sort_keys=True))
        for name, c in changed.items():
            setattr(self.settings, name, c["to"])
        self.audit.append(
            actions.CONFIG, actor=actor, details={"change": "settings_ui", "settings": changed}
        )
        self._remember_config()
        return changed

    def reset_setting(self, name: str, *, actor: str | None = None) -> dict[str, Any]:
        """Drop a value saved in the UI: `name` is again as `vultus.toml` (or the environment,
        or the default) gives it, at once and in every process that opens the catalog after.
        Audited with the old and new value; returns them ({"from": ..., "to": ...})."""
        overrides = self.settings_overrides()
        editable = EDITABLE.get(name)
        if editable is None or name not in overrides:
            raise ConfigError(
                f"{editable.label if editable else name} is not set in the UI: it already "
                "comes from vultus.toml or the default",
                code="setting_not_overridden",
            )
        value = copy.deepcopy(self._file_settings[name])
        portal = value if name == "portal_enabled" else self.settings.portal_enabled
        controller = value if name == "controller" else self.settings.controller
        if portal and not controller:
            raise ConfigError(
                "vultus.toml names no controller and the rights portal is open: close the "
                "portal first",
                code="controller_unset",
            )
        change = {"from": getattr(self.settings, name), "to": value}
        del overrides[name]
        self.catalog.set_meta(OVERRIDES_KEY, json.dumps(overrides, sort_keys=True))
        setattr(self.settings, name, value)
        self.audit.append(
            actions.CONFIG,
            actor=actor,
            details={"change": "settings_reset", "settings": {name: change}},
        )
        self._remember_config()
        return change

    if TYPE_CHECKING:
        # core.py: the editable settings as the file gave them, before the overrides.
        _file_settings: dict[str, Any]

        def _remember_config(self) -> None: ...  # core.py: the settings compared at open
