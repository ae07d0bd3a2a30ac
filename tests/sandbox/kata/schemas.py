"""Schema checks for what the Kata backend sends: ``kubernetes-validate`` (strict) for built-in kinds,
the agent-sandbox CRDs' own ``openAPIV3Schema`` (made strict) for custom ones."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate

Json = dict[str, Any]

K8S_VERSIONS = ("1.33.0", "1.37.0")  # the oldest we claim and the newest kubernetes-validate ships
CRD_DIR = Path(__file__).parent / "fixtures" / "crds"
CUSTOM_KINDS = {
    "SandboxClaim": "sandboxclaims",
    "SandboxTemplate": "sandboxtemplates",
    "SandboxWarmPool": "sandboxwarmpools",
}


def _strict(schema: Any) -> Any:
    """Unknown fields become errors (what ``fieldValidation=Strict`` does on a real server)."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def _crd_validator(kind: str) -> jsonschema.Draft7Validator:
    data = json.loads((CRD_DIR / f"{CUSTOM_KINDS[kind]}.v1beta1.json").read_text())
    schema = _strict(data["openAPIV3Schema"])
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())


def validate_object(obj: Json) -> None:
    """Raise when ``obj`` does not match its published schema (every version we claim)."""
    kind = obj.get("kind", "")
    if kind in CUSTOM_KINDS:
        assert obj.get("apiVersion") == "extensions.agents.x-k8s.io/v1beta1", obj.get("apiVersion")
        _crd_validator(kind).validate(obj)
        return
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


def problems(obj: Json) -> str | None:
    """The validation error of ``obj`` as text, or None when it is valid."""
    try:
        validate_object(obj)
    except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as exc:
        return f"{obj.get('kind')}: {exc.message}"
    except (kubernetes_validate.SchemaNotFoundError, AssertionError) as exc:
        return f"{obj.get('kind')}: {exc}"
    return None
