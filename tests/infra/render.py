"""Render the kustomize overlays of infra/ with the real ``kubectl kustomize`` (or ``kustomize build``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

__all__ = ["INFRA", "OVERLAYS", "ROOT", "Obj", "find", "kustomize_command", "render"]

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
OVERLAYS = ("dev", "prod")

Obj = dict[str, Any]

KUBECTL_HINT = (
    "kubectl (with its built-in kustomize v5) is not installed: get it from "
    "https://kubernetes.io/docs/tasks/tools/ (Debian's kubernetes-client package is too old), "
    "or put a standalone `kustomize` v5 on PATH"
)


def kustomize_command() -> list[str] | None:
    """``kubectl kustomize`` when kubectl is there, else ``kustomize build``, else None."""
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        return [kubectl, "kustomize"]
    kustomize = shutil.which("kustomize")
    return [kustomize, "build"] if kustomize is not None else None


def render(directory: Path) -> list[Obj]:
    """Every object the kustomization in ``directory`` renders to."""
    command = kustomize_command()
    assert command is not None, KUBECTL_HINT
    done = subprocess.run([*command, str(directory)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"kustomize failed for {directory}:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def find(objs: list[Obj], kind: str, name: str | None = None, namespace: str | None = None) -> list[Obj]:
    """Objects of ``kind`` (and ``name`` / ``namespace`` when given)."""
    return [
        o
        for o in objs
        if o["kind"] == kind
        and (name is None or o["metadata"]["name"] == name)
        and (namespace is None or o["metadata"].get("namespace") == namespace)
    ]
