"""A file-system model registry: versioned, immutable model directories and a champion pointer.

    <root>/<model>/v0001/card.json     metrics, training and evaluation windows, code version,
                                       sha256 of every model file; written last
    <root>/<model>/v0001/...           the model's own files (LightGBM text model, .npz, ...)
    <root>/<model>/champion.json       the version serving now, and every promotion decision

Versions are published like everything else here (``publish.publish_dir``, DESIGN.md decision 6):
written under a temp name, fsynced, the card last, renamed. The champion pointer is replaced
atomically (``publish.atomic_write_json``). A challenger is promoted
only if it is not worse than the champion by more than ``margin`` on the *same* evaluation data
(the caller evaluates both).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tiktok_pipelines.publish import atomic_write_json, file_sha256s, publish_dir

CARD = "card.json"
CHAMPION = "champion.json"
_VERSION_RE = re.compile(r"^v(\d{4,})$")


def code_version() -> str:
    """The git commit of the code that trained a model, or the package version outside git."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return "package-" + version("tiktok_pipelines")
        except PackageNotFoundError:
            return "unknown"


class ModelRegistry:
    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def versions(self, model: str) -> list[int]:
        d = self.root / model
        if not d.is_dir():
            return []
        return sorted(int(m.group(1)) for p in d.iterdir() if (m := _VERSION_RE.match(p.name)))

    def path(self, model: str, version: int) -> Path:
        return self.root / model / f"v{version:04d}"

    def card(self, model: str, version: int) -> dict[str, Any]:
        return json.loads((self.path(model, version) / CARD).read_text())

    def register(self, model: str, write_files: Callable[[Path], None], card: dict[str, Any]) -> int:
        """Publish a new version: ``write_files(dir)`` writes the model's files, the card goes last."""
        d = self.root / model
        for p in d.glob(".tmp-*"):  # left by a registration that crashed before publish.py
            shutil.rmtree(p, ignore_errors=True)
        version = (self.versions(model) or [0])[-1] + 1

        def full_card(tmp: Path) -> dict[str, Any]:
            return {**card, "model": model, "version": version, "created_at": time.time(),
                    "code_version": card.get("code_version") or code_version(), "files": file_sha256s(tmp)}

        with publish_dir(self.path(model, version), manifest_name=CARD, manifest=full_card) as tmp:
            write_files(tmp)
        return version

    def champion(self, model: str) -> dict[str, Any] | None:
        p = self.root / model / CHAMPION
        return json.loads(p.read_text()) if p.exists() else None

    def decide(self, model: str, challenger: int, challenger_metric: float,
               champion_metric: float | None, *, margin: float, metric: str = "auc") -> dict[str, Any]:
        """Promote ``challenger`` unless the champion beats it by more than ``margin`` on the
        same data (higher is better). Records the decision either way; returns it."""
        current = self.champion(model)
        promote = current is None or champion_metric is None or challenger_metric >= champion_metric - margin
        decision = {
            "challenger": challenger, "champion_before": current["version"] if current else None,
            "metric": metric, "challenger_value": challenger_metric, "champion_value": champion_metric,
            "margin": margin, "promoted": bool(promote), "decided_at": time.time(),
        }
        history = (current or {}).get("history", []) + [decision]
        pointer = {"version": challenger if promote else current["version"], "history": history[-100:]}
        atomic_write_json(self.root / model / CHAMPION, pointer)
        return decision
