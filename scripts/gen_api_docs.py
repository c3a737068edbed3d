"""Write ``docs/api.md`` and ``docs/openapi.json`` from the app's own OpenAPI document.

Run from the repository root after changing a route or a schema::

    .venv/bin/python scripts/gen_api_docs.py          # writes both files
    .venv/bin/python scripts/gen_api_docs.py --check  # exit 1 when they are out of date

The app is built with :func:`chatsessions.app.create_app` (no server, no database
connection), so the documents are exactly what ``GET /openapi.json`` serves.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
METHODS = ("get", "post", "put", "patch", "delete")

INTRO = """\
# HTTP API reference

Generated from the app's OpenAPI document by `scripts/gen_api_docs.py` — do not edit by
hand; run `.venv/bin/python scripts/gen_api_docs.py` after changing a route or a schema.
The machine-readable document is [openapi.json](openapi.json); a running server also
serves it at `GET /openapi.json` and an interactive page at `/docs`.

**Base URL**: `http://<host>:<port>/v1` — the same paths as DM Champ's public v1 API, so a
DM Champ client changes only its base URL. `/healthz`, `/readyz` and `/metrics` are outside
`/v1` and need no API key.

**Authentication** (every `/v1` endpoint; see [decisions](decisions.md) for the details):
`apiKey` query parameter, `X-API-Key` header, `Authorization: Bearer <key>`, or the
`userId` query parameter (DM Champ's alternative; off with
`CHATSESSIONS_ALLOW_USER_ID_AUTH=false`). Each credential given must be valid and all must
name the same user, else **401**.

**Errors** are JSON `{"success": false, "error": "<what is wrong, naming the parameter>",
"code": "<machine code>"}` with `code` one of `invalid_parameter` (400), `unauthorized`
(401), `not_found` (404), `method_not_allowed` (405), `conflict` (409),
`payload_too_large` (413), `rate_limited` (429, with `Retry-After`), `internal` (500),
`unavailable` (503). Validation failures are 400, never 422.

**Times** are ISO 8601 UTC with milliseconds and `Z` (`2026-11-24T09:00:00.000Z`).
"""


def build_openapi() -> dict[str, Any]:
    """The OpenAPI document of a freshly built app."""
    sys.path.insert(0, str(ROOT / "src"))
    from chatsessions.app import create_app
    from chatsessions.config import Settings

    with tempfile.TemporaryDirectory() as tmp:
        # A throwaway SQLite URL: the engine is created but never connected.
        settings = Settings(database_url=f"sqlite:///{tmp}/unused.db", docs_enabled=True)
        app = create_app(settings)
        return app.openapi()


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def type_of(schema: Any) -> str:
    """A short human rendering of a JSON Schema type."""
    if not isinstance(schema, dict) or not schema:
        return "any"
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        return f"[{name}](#{name.lower()})"
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return " | ".join(f"`{v}`" for v in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            parts = [type_of(s) for s in schema[key] if s.get("type") != "null"]
            nullable = any(s.get("type") == "null" for s in schema[key])
            text = " or ".join(parts) or "null"
            return f"{text}, nullable" if nullable else text
    kind = schema.get("type")
    if kind == "array":
        return f"array of {type_of(schema.get('items', {}))}"
    if isinstance(kind, list):
        return " or ".join(str(k) for k in kind)
    if kind == "object" and "additionalProperties" in schema:
        return f"object of {type_of(schema['additionalProperties'])}"
    text = str(kind or "any")
    limits = []
    if "maxLength" in schema:
        limits.append(f"≤ {schema['maxLength']} chars")
    if "minItems" in schema or "maxItems" in schema:
        limits.append(f"{schema.get('minItems', 0)}–{schema.get('maxItems', '∞')} items")
    return f"{text} ({', '.join(limits)})" if limits else text


def _cell(text: Any) -> str:
    return " ".join(str(text or "").split()).replace("|", "\\|")


def fields_table(schema: dict[str, Any]) -> list[str]:
    """A field table of an object schema (one level; nested objects link to their schema)."""
    props = schema.get("properties", {})
    if not props:
        return [f"Type: {type_of(schema)}", ""]
    required = set(schema.get("required", []))
    out = ["| field | type | required | description |", "| --- | --- | --- | --- |"]
    for name, prop in props.items():
        desc = prop.get("description", "")
        out.append(
            f"| `{name}` | {_cell(type_of(prop))} | {'yes' if name in required else ''} | "
            f"{_cell(desc)} |"
        )
    return [*out, ""]


def _body_schema(container: dict[str, Any]) -> dict[str, Any] | None:
    content = container.get("content", {})
    for media in ("application/json", "text/plain"):
        if media in content:
            schema = content[media].get("schema")
            return schema if isinstance(schema, dict) else {}
    return None


def render_operation(method: str, path: str, op: dict[str, Any]) -> list[str]:
    """The section of one endpoint."""
    out = [f"### `{method.upper()} {path}`", ""]
    if op.get("summary"):
        out += [f"**{op['summary']}**", ""]
    if op.get("description"):
        out += [op["description"].strip(), ""]
    params = op.get("parameters", [])
    if params:
        out += ["| parameter | in | required | description |", "| --- | --- | --- | --- |"]
        for p in params:
            desc = p.get("description") or p.get("schema", {}).get("description", "")
            out.append(
                f"| `{p['name']}` | {p['in']} | {'yes' if p.get('required') else ''} | "
                f"{_cell(desc)} |"
            )
        out.append("")
    body = op.get("requestBody")
    if body:
        body_schema = _body_schema(body) or {}
        title = body_schema.get("title", "")
        out += [f"Request body (JSON{', ' + title if title else ''}; unknown fields ignored):", ""]
        out += fields_table(body_schema)
    responses = {k: v for k, v in op.get("responses", {}).items() if k != "422"}
    errors: list[str] = []
    error_types: set[str] = set()
    for status, response in responses.items():
        schema = _body_schema(response)
        if status.isdigit() and int(status) >= 400:
            errors.append(status)
            if schema and "$ref" in schema:
                error_types.add(type_of(schema))
            continue
        line = f"Response **{status}**"
        if schema and "$ref" in schema:
            line += f": {type_of(schema)}"
        elif response.get("description") and response["description"] != "Successful Response":
            line += f": {response['description']}"
        out += [line, ""]
    if errors:
        shape = f" ({', '.join(sorted(error_types))})" if error_types else ""
        out += [f"Errors{shape}: {', '.join(errors)}", ""]
    return out


def render(doc: dict[str, Any]) -> str:
    """The whole Markdown reference."""
    out = [INTRO]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, item in doc.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                tag = (item[method].get("tags") or ["other"])[0]
                by_tag.setdefault(tag, []).append((method, path, item[method]))
    out += ["## Endpoints", ""]
    for tag, ops in by_tag.items():
        out += [f"- **{tag}**: " + ", ".join(f"`{m.upper()} {p}`" for m, p, _ in ops)]
    out.append("")
    for tag, ops in by_tag.items():
        out += [f"## {tag[:1].upper()}{tag[1:]}", ""]
        for method, path, op in ops:
            out += render_operation(method, path, op)
    schemas = {
        name: schema
        for name, schema in doc.get("components", {}).get("schemas", {}).items()
        if name not in ("HTTPValidationError", "ValidationError")
    }
    if schemas:
        out += ["## Schemas", ""]
        for name, schema in schemas.items():
            out += [f"### {name}", ""]
            if schema.get("description"):
                out += [" ".join(schema["description"].split()), ""]
            out += fields_table(schema)
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    """Write (or with ``--check`` compare) docs/api.md and docs/openapi.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the files are stale")
    args = parser.parse_args()
    doc = build_openapi()
    outputs = {
        DOCS / "openapi.json": json.dumps(doc, indent=2, ensure_ascii=False) + "\n",
        DOCS / "api.md": render(doc),
    }
    stale = [
        path for path, text in outputs.items() if not path.exists() or path.read_text() != text
    ]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is out of date: run scripts/gen_api_docs.py")
        return 1 if stale else 0
    DOCS.mkdir(exist_ok=True)
    for path, text in outputs.items():
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
