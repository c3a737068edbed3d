"""The vendored front-end files are exactly the ones recorded (version, licence, SHA-256)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "src" / "chatsessions" / "console" / "static" / "vendor"


def test_each_vendored_file_matches_its_recorded_sha256() -> None:
    table = (VENDOR / "VENDORED.md").read_text()
    rows = re.findall(r"`([^`]+\.(?:js|css))`[^|]*\| `([0-9a-f]{64})`", table)
    assert len(rows) == 4
    for name, digest in rows:
        path = ROOT / name if name.startswith("tests/") else VENDOR / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, name
        assert (path.parent / "LICENSE").is_file(), name


def test_templates_load_only_vendored_or_own_scripts() -> None:
    templates = (VENDOR.parent.parent / "templates").glob("*.html")
    sources = {s for t in templates for s in re.findall(r'<script src="([^"]+)"', t.read_text())}
    assert sources == {
        "/console/static/vendor/htmx-2.0.8/htmx.min.js",
        "/console/static/vendor/uplot-1.6.32/uPlot.iife.min.js",
        "/console/static/console.js",
    }
