"""Reading the deployment files the way their tools do: the Dockerfile's final stage, YAML."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
COMPOSE = REPO_ROOT / "compose.yaml"
KUBERNETES = REPO_ROOT / "deploy" / "kubernetes"


@dataclass
class Stage:
    """The final stage of a Dockerfile: what a container of the image starts with."""

    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    user: str | None = None
    copies: list[tuple[str, str]] = field(default_factory=list)


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def _exec_form(args: str) -> list[str]:
    if args.startswith("["):
        value = json.loads(args)
        assert isinstance(value, list)
        return [str(v) for v in value]
    return ["/bin/sh", "-c", args]  # shell form, as Docker runs it


def final_stage(path: Path = DOCKERFILE) -> Stage:
    stage = Stage()
    for keyword, args in _instructions(path.read_text()):
        if keyword == "FROM":
            stage = Stage()  # ENV and the rest do not carry over from earlier stages
        elif keyword == "ENV":
            for item in shlex.split(args):
                key, sep, value = item.partition("=")
                assert sep, f"ENV {item!r}: only the KEY=value form is read here"
                stage.env[key] = value
        elif keyword == "WORKDIR":
            stage.workdir = args
        elif keyword == "ENTRYPOINT":
            stage.entrypoint = _exec_form(args)
        elif keyword == "CMD":
            stage.cmd = _exec_form(args)
        elif keyword == "USER":
            stage.user = args
        elif keyword == "COPY":
            parts = [p for p in shlex.split(args) if not p.startswith("--")]
            stage.copies.extend((src, parts[-1]) for src in parts[:-1])
    return stage


def manifests() -> dict[str, list[dict[str, Any]]]:
    """Every document of every manifest in deploy/kubernetes, by file name."""
    return {
        path.name: [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        for path in sorted(KUBERNETES.glob("*.yaml"))
    }


def find(kind: str, name: str) -> dict[str, Any]:
    for docs in manifests().values():
        for doc in docs:
            if doc["kind"] == kind and doc["metadata"]["name"] == name:
                return doc
    raise AssertionError(f"no {kind} {name} in {KUBERNETES}")
