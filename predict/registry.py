"""The model registry: versioned folders, and a pointer to the one that serves.

Layout under the registry root (``MODEL_REGISTRY``, default ``var/models``)::

    v0001/ model.keras  scalers.json  meta.json  evaluation.md  evaluation.json
    v0002/ ...
    promoted.json      {"version": "v0002", "skill": ..., "promoted_at_ms": ...}

A version folder is written completely under a temporary name and renamed
into place, and the pointer is replaced atomically, so a reader (the serving
process) never sees half a model. A new version is promoted only when its
holdout skill against persistence is not worse than the promoted one's;
otherwise it is kept with ``status: not_promoted`` and the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROMOTED = "promoted.json"
META = "meta.json"
MODEL_FILE = "model.keras"
SCALERS = "scalers.json"


class RegistryError(RuntimeError):
    """The registry has no such version, or no promoted model."""


def code_version(root: Path | None = None) -> str:
    """The git commit of the code (``-dirty`` when the tree has changes), or ``unknown``."""
    root = root or Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "predict"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _write_json_atomic(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def model_bar_seconds(meta: dict[str, Any]) -> int | None:
    """The bar size a registered model was trained on; None when its record predates saying so
    (then the bar size of its training data, if every series had the same one)."""
    on = meta.get("trained_on") or {}
    if on.get("bar_seconds"):
        return int(on["bar_seconds"])
    sizes = {int(d["bar_seconds"]) for d in (meta.get("data") or {}).values() if d.get("bar_seconds")}
    return sizes.pop() if len(sizes) == 1 else None


@dataclass(frozen=True)
class Decision:
    promoted: bool
    reason: str


def decide(candidate_skill: float, current_skill: float | None) -> Decision:
    """Promote when there is no current model or the candidate's skill is not worse."""
    if current_skill is None:
        return Decision(True, "first model (none was promoted before)")
    if candidate_skill >= current_skill:
        return Decision(True, f"skill {candidate_skill:+.4f} >= current {current_skill:+.4f}")
    return Decision(False, f"skill {candidate_skill:+.4f} < current {current_skill:+.4f}")


def _json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` (a registry file); anything else is a :class:`RegistryError`."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise RegistryError(f"{path} holds no JSON object")
    return data


class Registry:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, version: str) -> Path:
        p = self.root / version
        if not (p / META).exists():
            raise RegistryError(f"no model version {version!r} in {self.root}")
        return p

    def meta(self, version: str) -> dict[str, Any]:
        return _json_object(self.path(version) / META)

    def versions(self) -> list[dict[str, Any]]:
        """Every version's metadata, oldest first."""
        if not self.root.exists():
            return []
        return [_json_object(p / META) for p in sorted(self.root.glob("v[0-9]*")) if (p / META).exists()]

    def promoted(self) -> dict[str, Any] | None:
        """The pointer (``version``, ``skill``, ``promoted_at_ms``) or None."""
        try:
            return _json_object(self.root / PROMOTED)
        except FileNotFoundError:
            return None

    def promoted_version(self) -> str | None:
        p = self.promoted()
        return None if p is None else str(p["version"])

    # --- writing -------------------------------------------------------------------

    def register(self, save_model: Any, scalers: dict[str, Any], meta: dict[str, Any],
                 files: dict[str, str] | None = None, *, promote: bool = True) -> dict[str, Any]:
        """Write a new version (``save_model(path)`` writes the model file) and maybe promote it.

        ``meta`` must hold ``skill`` (holdout skill against persistence). Returns
        the stored metadata with ``version``, ``status`` and ``status_reason``.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".new-"))
        try:
            save_model(tmp / MODEL_FILE)
            (tmp / SCALERS).write_text(json.dumps(scalers, indent=2))
            for name, text in (files or {}).items():
                (tmp / name).write_text(text)
            while True:
                n = max([int(p.name[1:]) for p in self.root.glob("v[0-9]*") if p.name[1:].isdigit()], default=0) + 1
                version = f"v{n:04d}"
                stored = {**meta, "version": version, "created_at_ms": int(time.time() * 1000),
                          "status": "registered", "status_reason": ""}
                _write_json_atomic(tmp / META, stored)
                try:
                    tmp.rename(self.root / version)
                    break
                except OSError:
                    continue  # another trainer took that number
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if promote:
            self.promote(version)
        else:
            self._set_status(version, "not_promoted", "registered without promotion (--no-promote)")
        return self.meta(version)

    def _set_status(self, version: str, status: str, reason: str) -> None:
        meta = self.meta(version)
        meta["status"], meta["status_reason"] = status, reason
        _write_json_atomic(self.path(version) / META, meta)

    def promote(self, version: str, *, force: bool = False, why: str | None = None) -> Decision:
        """Point serving at ``version`` if its skill is not worse than the current one (or ``force``;
        ``why`` then says why in its status). Skills measured on different bar sizes are not
        comparable: such a candidate is promoted only by force."""
        meta = self.meta(version)
        current = self.promoted()
        if current is not None and current["version"] == version:
            return Decision(True, "already promoted")
        decision = decide(float(meta["skill"]), None if current is None else float(current["skill"]))
        if current is not None and (self.root / current["version"] / META).exists():
            mine, theirs = model_bar_seconds(meta), model_bar_seconds(self.meta(current["version"]))
            if mine is not None and theirs is not None and mine != theirs:
                decision = Decision(False, f"trained on {mine} s bars, the promoted {current['version']} on "
                                           f"{theirs} s bars: skills on different bars do not compare "
                                           "(promote with --force to serve it)")
        if force and not decision.promoted:
            decision = Decision(True, f"forced: {why}" if why else f"forced ({decision.reason})")
        if not decision.promoted:
            self._set_status(version, "not_promoted", decision.reason)
            return decision
        _write_json_atomic(self.root / PROMOTED, {"version": version, "skill": float(meta["skill"]),
                                                  "promoted_at_ms": int(time.time() * 1000)})
        if current is not None and (self.root / current["version"] / META).exists():
            self._set_status(current["version"], "retired", f"replaced by {version}")
        self._set_status(version, "promoted", decision.reason)
        return decision
