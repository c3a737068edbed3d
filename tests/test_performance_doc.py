"""docs/performance.md is what ``bench/report.py`` renders from ``bench/results/``,
``bench/ingest-findings.md`` and ``bench/findings.md``: an edit made to the document alone
would be lost at the next ``make bench`` (it once was), so it must be made in those
sources, and this test says which document the sources give."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_performance_document_is_its_rendering(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import report  # bench/report.py

    try:
        # The plot is drawn by `make bench`, not here: only whether it exists matters.
        def drawn(_runs: Any, path: Path) -> bool:
            return path.exists()

        monkeypatch.setattr(report, "plot", drawn)
        rendered = report.render(report.newest())
    finally:
        sys.modules.pop("report", None)
    written = (ROOT / "docs" / "performance.md").read_text()
    assert rendered == written, (
        "docs/performance.md differs from bench/report.py's rendering: edit "
        "bench/ingest-findings.md or bench/findings.md, then run `python bench/report.py`"
    )
