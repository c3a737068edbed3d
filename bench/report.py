"""Render ``docs/performance.md`` and ``docs/performance.png`` from ``bench/results/``.

    python bench/report.py

Takes the newest ``<scale>-<date>.json`` of each scale: the tables of the largest scale
measured come first, the targets are judged on it (ratios from that one run), the plot
shows each read scenario's p50/p99 against dataset size, and the hand-written analysis in
``bench/findings.md`` is included as it is. So is the ingest section
(``bench/ingest-findings.md``: the table of a run named with its commit and machine, the
growth figures and what they mean), which a re-render must not replace with the newest
run's bare table; without that file the section is generated from the newest
``ingest-shapes-*.json`` and ``docs/ingest-plans.md``.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DOCS = HERE.parent / "docs"
SCALES = ("small", "medium", "large")
READS = ("recent", "recent_messages", "contact")
LABELS = {
    "recent": "GET /recent?hours=24&limit=100",
    "recent_messages": "GET /recent … &includeMessages=true",
    "contact": "GET /chat-sessions/{heavy contact}",
    "post_message": "POST /v1/messages",
    "post_batch": "POST /v1/messages/batch (1,000 items)",
    "paging": "paging 10,000 sessions (limit=100, cursor)",
}


def newest() -> dict[str, dict[str, Any]]:
    """The newest result document of each scale."""
    out = {}
    for scale in SCALES:
        files = sorted(RESULTS.glob(f"{scale}-20*.json"))
        if files:
            out[scale] = json.loads(files[-1].read_text()) | {"_file": files[-1].name}
    return out


def newest_shapes() -> list[dict[str, Any]]:
    """The newest ``bench/ingest_shapes.py`` results (empty: none yet): the file whose
    cases were measured last (``measured_at``; files from before it was recorded count as
    oldest, by name), growth runs (``--growth``) left out."""
    runs = []
    for path in RESULTS.glob("ingest-shapes-*.json"):
        if "growth" in path.name:
            continue
        cases = list(json.loads(path.read_text()))
        runs.append((max((c.get("measured_at", "") for c in cases), default=""), path.name, cases))
    return max(runs)[2] if runs else []


def shapes_section(results: list[dict[str, Any]]) -> list[str]:
    """The ingest table: shape × backend × concurrency → msg/s, floor, ratio; growth."""
    if not results:
        return []
    out = [
        "## Ingest at every shape of data (`bench/ingest_shapes.py`)",
        "",
        "Each line on freshly created and migrated databases (ours and the floor each on its "
        "own), 1,000-message batches through `messages.service.store_messages` (the routes' "
        "write path without HTTP), durably committed. The floor writes the same rows "
        "(contacts, sessions as the rule cuts them, messages) with hand-written set-based "
        "SQL, one transaction per batch, in the same run. At concurrency > 1 each worker has "
        "its own tenant and sends the shape's first batches (messages: per worker). "
        "Growth (history and back-fill only): p50 of the last 10 batches / p50 of batches "
        "11–20 (after 10 of warm-up), for ours and for the floor of the same run. "
        "Measured on the shared 2-core machine under other agents' load.",
        "",
        "| shape | backend | concurrency | messages (per worker) | ours msg/s | floor msg/s | ratio "
        "| p50 ms ours / floor | growth ours / floor |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in results:
        growth = "–"
        if "growth" in r:
            growth = f"{r['growth']:.2f} / {_growth(r['floor']['batch_ms']):.2f}"
        out.append(
            f"| {r['shape']} | {r['backend']} | {r['workers']} | {r['messages']:,} | "
            f"{r['ours']['msg_per_s']:,.0f} | {r['floor']['msg_per_s']:,.0f} | "
            f"{r['ratio']:.2f} | {r['ours']['p50_ms']:.1f} / {r['floor']['p50_ms']:.1f} | "
            f"{growth} |"
        )
    return [*out, ""]


def _growth(batch_ms: list[float]) -> float:
    """p50 of the last 10 batches / p50 of batches 11-20."""
    return statistics.median(batch_ms[-10:]) / statistics.median(batch_ms[10:20])


def f(x: float | None, digits: int = 1) -> str:
    """A number for a table."""
    if x is None:
        return "–"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def scenario_table(r: dict[str, Any]) -> list[str]:
    """Scenarios of one run."""
    lines = [
        "| scenario | conc. | throughput | p50 ms | p99 ms | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    sc = r["scenarios"]
    for name in (*READS, "post_message", "post_batch"):
        for c in (1, 32):
            v = sc.get(f"{name}@c{c}")
            if v is None:
                continue
            thr = f"{f(v['msg_per_s'])} msg/s" if "msg_per_s" in v else f"{f(v['rps'])} req/s"
            lines.append(
                f"| {LABELS[name]} | {c} | {thr} | {f(v['p50_ms'], 2)} | "
                f"{f(v['p99_ms'], 2)} | {v['errors']} |"
            )
    p = sc.get("paging")
    if p:
        lines.append(
            f"| {LABELS['paging']} | 1 | {p['sessions']:,} sessions, {p['pages']} pages "
            f"in {p['total_s']:.2f} s | {f(p['p50_ms'], 2)} | {f(p['p99_ms'], 2)} | "
            f"{p['errors']} |"
        )
    for name, b in (r.get("baseline") or {}).items():
        for c in (1, 32):
            v = b.get(f"recent@c{c}")
            if v:
                lines.append(
                    f"| {LABELS['recent']} on **{name}** (same run) | {c} | "
                    f"{f(v['rps'])} req/s | {f(v['p50_ms'], 2)} | {f(v['p99_ms'], 2)} | "
                    f"{v['errors']} |"
                )
    return lines


def floor_table(r: dict[str, Any]) -> list[str]:
    """Floors of one run, beside the API figure they bound."""
    fl, sc = r["floors"], r["scenarios"]
    lines = ["| what | conc. | floor | API | API ÷ floor |", "| --- | ---: | --- | --- | ---: |"]
    for name in ("recent", "recent_messages", "contact"):
        for c in (1, 32):
            for kind, how in (
                ("db", "prepared, default plan cache"),
                ("dbcustom", "plan_cache_mode=force_custom_plan"),
            ):
                db, api = fl.get(f"{kind}:{name}@c{c}"), sc.get(f"{name}@c{c}")
                if db and api:
                    lines.append(
                        f"| (a) database, {name}: service SQL via asyncpg, {how} | {c} | p50 "
                        f"{f(db['p50_ms'], 3)} / p99 {f(db['p99_ms'], 2)} ms | p50 "
                        f"{f(api['p50_ms'], 2)} / p99 {f(api['p99_ms'], 2)} ms | "
                        f"{api['p50_ms'] / db['p50_ms']:.1f}× (p50) |"
                    )
    for c in (1, 32):
        db = fl.get(f"db:auth@c{c}")
        if db:
            lines.append(
                f"| (a) database, API-key lookup alone | {c} | p50 {f(db['p50_ms'], 3)} / "
                f"p99 {f(db['p99_ms'], 2)} ms | – | – |"
            )
    for name in ("recent", "recent_messages"):
        for c in (1, 32):
            h, api = fl.get(f"http:{name}@c{c}"), sc.get(f"{name}@c{c}")
            if h and api:
                lines.append(
                    f"| (b) HTTP, static body of the {name} size ({r['response_bytes'][name]:,} B) "
                    f"| {c} | {f(h['rps'])} req/s, p50 {f(h['p50_ms'], 3)} / p99 "
                    f"{f(h['p99_ms'], 2)} ms | {f(api['rps'])} req/s | "
                    f"{h['rps'] / max(api['rps'], 1e-9):.0f}× slower |"
                )
    # The ingest floors; (c″) is absent from runs before it existed.
    for key, scenario, what, digits, per in (
        ("ingest", "post_message", "(c) ingest transaction via asyncpg", 2, ""),
        (
            "ingest_batch",
            "post_batch",
            "(c′) batch of 1,000, set-based transaction via asyncpg (8 statements)",
            1,
            " per batch",
        ),
        (
            "ingest_service",
            "post_message",
            "(c″) service's 3 ingest statements via asyncpg (one message)",
            2,
            "",
        ),
        (
            "ingest_service_batch",
            "post_batch",
            "(c″) service's 3 ingest statements via asyncpg (batch of 1,000)",
            1,
            " per batch",
        ),
    ):
        for c in (1, 32):
            ing, api = fl.get(f"{key}@c{c}"), sc.get(f"{scenario}@c{c}")
            if ing and api:
                lines.append(
                    f"| {what} | {c} | {f(ing['msg_per_s'])} msg/s, "
                    f"p50 {f(ing['p50_ms'], digits)} ms{per} | {f(api['msg_per_s'])} msg/s | "
                    f"API = {100 * api['msg_per_s'] / max(ing['msg_per_s'], 1e-9):.0f}% of floor |"
                )
    return lines


def targets(runs: dict[str, dict[str, Any]]) -> list[str]:
    """Each target: met or missed, with the measured figures and ratios."""
    scale = next((s for s in reversed(SCALES) if s in runs), None)
    if scale is None:
        return ["No results yet."]
    r = runs[scale]
    sc, fl = r["scenarios"], r["floors"]
    rows = ["| target | measured (" + scale + ") | verdict |", "| --- | --- | --- |"]

    def verdict(ok: bool | None) -> str:
        return "–" if ok is None else ("**met**" if ok else "**missed**")

    base = (r.get("baseline") or {}).get("small", {}).get("recent@c1")
    small = base or (runs.get("small", {}).get("scenarios", {}).get("recent@c1"))
    big = sc.get("recent@c1")
    if scale == "small" or not small or not big:
        rows.append("| recent p50 at large ≤ 1.5× small | needs a large (or medium) run | – |")
    else:
        ratio = big["p50_ms"] / small["p50_ms"]
        src = "same run" if base else "separate runs"
        rows.append(
            f"| recent p50 at {scale} ≤ 1.5× small | {f(big['p50_ms'], 2)} ms vs "
            f"{f(small['p50_ms'], 2)} ms ({src}): {ratio:.2f}× | {verdict(ratio <= 1.5)} |"
        )

    def cheaper(name: str) -> dict[str, Any] | None:
        # A floor is the cheaper of the two ways of running the same SQL.
        found = [x for x in (fl.get(f"db:{name}"), fl.get(f"dbcustom:{name}")) if x]
        return min(found, key=lambda x: x["p50_ms"]) if found else None

    db, auth = cheaper("recent@c1"), cheaper("auth@c1")
    http = fl.get("http:recent@c1")
    if big and db and http:
        # The database floor is the SQL the request runs: the key lookup and the listing.
        sql = db["p50_ms"] + (auth["p50_ms"] if auth else 0.0)
        bound = sql + http["p50_ms"]
        ratio = big["p50_ms"] / bound
        parts = (
            f"key lookup {f(auth['p50_ms'], 3)} + listing {f(db['p50_ms'], 3)}"
            if auth
            else f"listing {f(db['p50_ms'], 3)}"
        )
        listing_only = big["p50_ms"] / (db["p50_ms"] + http["p50_ms"])
        rows.append(
            f"| recent c=1 p50 ≤ 2× (db floor + HTTP floor) | {f(big['p50_ms'], 2)} ms vs db "
            f"floor ({parts}) + HTTP {f(http['p50_ms'], 3)} = {f(bound, 3)} ms: {ratio:.1f}× "
            f"(listing alone as the db floor: {listing_only:.1f}×) | {verdict(ratio <= 2)} |"
        )
    rm = sc.get("recent_messages@c32")
    if rm:
        rmf = cheaper("recent_messages@c32")
        rows.append(
            f"| includeMessages=true p99 ≤ 100 ms at c=32 | p99 {f(rm['p99_ms'], 1)} ms "
            f"(p50 {f(rm['p50_ms'], 1)} ms, {f(rm['rps'])} req/s)"
            + (
                f"; its SQL alone at c=32 (db floor): p99 {f(rmf['p99_ms'], 1)} ms, "
                f"{f(rmf['rps'])} req/s"
                if rmf
                else ""
            )
            + f" | {verdict(rm['p99_ms'] <= 100 and rm['errors'] == 0)} |"
        )
    pm, ing = sc.get("post_message@c32"), fl.get("ingest@c32")
    if pm and ing:
        share = pm["msg_per_s"] / max(ing["msg_per_s"], 1e-9)
        svc = fl.get("ingest_service@c32")  # (c″): absent from older runs
        rows.append(
            f"| single-message ingest ≥ 1,500 msg/s at c=32 and ≥ 40% of floor (c) | "
            f"{f(pm['msg_per_s'])} msg/s; floor (c) {f(ing['msg_per_s'])} msg/s: {share:.0%}"
            + (
                f"; floor (c″, the service's 3 statements) {f(svc['msg_per_s'])} msg/s: "
                f"{pm['msg_per_s'] / max(svc['msg_per_s'], 1e-9):.0%}"
                if svc
                else ""
            )
            + f" | {verdict(pm['msg_per_s'] >= 1500 and share >= 0.4)} |"
        )
    batches = [sc[k] for k in ("post_batch@c1", "post_batch@c32") if k in sc]
    if batches:
        best = max(b["msg_per_s"] for b in batches)
        rows.append(
            f"| batch ≥ 20,000 msg/s | best {f(best)} msg/s "
            f"(c=1: {f(sc.get('post_batch@c1', {}).get('msg_per_s'))}, "
            f"c=32: {f(sc.get('post_batch@c32', {}).get('msg_per_s'))})"
            + (
                f"; set-based floor (c′) {f(max(fl[k]['msg_per_s'] for k in bfl))} msg/s"
                if (bfl := [k for k in ("ingest_batch@c1", "ingest_batch@c32") if k in fl])
                else ""
            )
            + (
                f"; the service's 3 statements alone (c″) {f(max(fl[k]['msg_per_s'] for k in sfl))}"
                " msg/s"
                if (
                    sfl := [
                        k
                        for k in ("ingest_service_batch@c1", "ingest_service_batch@c32")
                        if k in fl
                    ]
                )
                else ""
            )
            + f" | {verdict(best >= 20000)} |"
        )
    peaks = [x["worker_peak_mb"] for x in r["rss"] if x["label"].startswith("service")]
    peaks += [s["worker_peak_mb"] for s in r.get("servers", [])]
    if peaks:
        rows.append(
            f"| RSS per worker ≤ 200 MB throughout | peak {f(max(peaks))} MB (VmRSS, sampled "
            f"every 0.5 s) | {verdict(max(peaks) <= 200)} |"
        )
    return rows


def servers_table(r: dict[str, Any], key: str = "servers") -> list[str]:
    """The server comparison of one run."""
    lines = [
        "| server | workers | c=1 req/s | c=1 p50 ms | c=32 req/s | c=32 p50 ms | "
        "c=32 p99 ms | errors | worker RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in r[key]:
        lines.append(
            f"| {s['server']} | {s['workers']} | {f(s['c1']['rps'])} | "
            f"{f(s['c1']['p50_ms'], 2)} | {f(s['c32']['rps'])} | "
            f"{f(s['c32']['p50_ms'], 2)} | {f(s['c32']['p99_ms'], 1)} | "
            f"{s['c1']['errors'] + s['c32']['errors']} | {f(s['worker_peak_mb'])} |"
        )
    best = max(r[key], key=lambda s: s["c32"]["rps"])
    lines += [
        "",
        f"Fastest at c=32 in this run: **{best['server']} with {best['workers']} "
        f"worker(s)** ({f(best['c32']['rps'])} req/s).",
    ]
    return lines


def plot(runs: dict[str, dict[str, Any]], path: Path) -> bool:
    """p50/p99 of each read scenario against dataset size (one panel per concurrency)."""
    try:
        import matplotlib  # type: ignore[import-not-found,unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        print("matplotlib missing: no plot (pip install -e '.[bench]')", file=sys.stderr)
        return False
    scales = [s for s in SCALES if s in runs]
    xs = [runs[s]["dataset"]["messages"] for s in scales]
    shapes = newest_shapes()
    fig, axes = plt.subplots(1, 3 if shapes else 2, figsize=(18 if shapes else 12, 4.8))
    if shapes:
        growth = axes[2]
        for r in shapes:
            ms = r["ours"]["batch_ms"]
            if r["workers"] != 1 or len(ms) < 10 or r["shape"] == "single":
                continue
            per = r["messages"] / len(ms)
            xs_g = [per * (i + 1) for i in range(len(ms))]
            growth.plot(xs_g, ms, label=f"{r['shape']} {r['backend']}", linewidth=0.8)
        growth.set_yscale("log")
        growth.set_xscale("log")
        growth.set_xlabel("messages stored (fresh database per line)")
        growth.set_ylabel("ms per batch of 1,000")
        growth.set_title("ingest: ms per batch as the database grows")
        growth.grid(True, which="both", alpha=0.3)
        growth.legend(fontsize=6)
    for ax, c in zip(axes[:2], (1, 32), strict=True):
        for name, color in zip((*READS, "paging"), ("C0", "C1", "C2", "C3"), strict=True):
            key = "paging" if name == "paging" else f"{name}@c{c}"
            if name == "paging" and c != 1:
                continue
            pts = [(x, runs[s]["scenarios"].get(key)) for x, s in zip(xs, scales, strict=True)]
            pts = [(x, v) for x, v in pts if v]
            if not pts:
                continue
            ax.plot(
                [x for x, _ in pts],
                [v["p50_ms"] for _, v in pts],
                "o-",
                color=color,
                label=f"{name} p50",
            )
            ax.plot(
                [x for x, _ in pts],
                [v["p99_ms"] for _, v in pts],
                "s--",
                color=color,
                alpha=0.6,
                label=f"{name} p99",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("messages in the dataset")
        ax.set_ylabel("latency (ms)")
        ax.set_title(f"read scenarios, concurrency {c}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def ingest_section() -> list[str]:
    """The ingest section: ``bench/ingest-findings.md`` as it is, else generated from the
    newest shapes run and ``docs/ingest-plans.md`` (bench/ingest_plans.py)."""
    curated = HERE / "ingest-findings.md"
    if curated.exists():
        return [curated.read_text().rstrip(), ""]
    out = shapes_section(newest_shapes())
    plans = DOCS / "ingest-plans.md"
    if plans.exists():
        body = (
            plans.read_text()
            .rstrip()
            .replace("\n## ", "\n### ")
            .replace("# Ingest", "## Ingest", 1)
        )
        out += [body, ""]
    return out


def render(runs: dict[str, dict[str, Any]]) -> str:
    """The whole document."""
    out = [
        "# Performance",
        "",
        "Generated by `make bench SCALE=…` (`bench/run.py`, then `bench/report.py`); the analysis "
        "section comes from `bench/findings.md`. Every figure below was measured on the "
        "project's 2-core machine while other test suites were running on it, so absolute "
        "numbers are noisy: compare the ratios, which come from one run each.",
        "",
    ]
    if not runs:
        return "\n".join([*out, "No results yet: run `make bench`."]) + "\n"
    out += [
        "## Datasets",
        "",
        "| scale | contacts | sessions | messages | small tenants | load time | run |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for s, r in runs.items():
        d = r["dataset"]
        secs = d.get("total_s") or sum(d.get(k, 0) for k in ("copy_s", "index_s", "vacuum_s"))
        load = f"{secs:.0f} s" if secs else "–"
        out.append(
            f"| {s} | {d['contacts']:,} | {d['sessions']:,} | {d['messages']:,} | "
            f"{d.get('small_tenants', '–')} | {load} | `{r['_file']}` ({r['server']['kind']}, "
            f"{r['server']['workers']} workers, {r['duration_s']} s per wrk run; service at "
            f"{r.get('service_commit') or 'an earlier commit (before 844098e)'}) |"
        )
    out += [
        "",
        "Counts include the small tenants. `large`: 100k contacts, ≈1M sessions and 10M "
        "messages in the bench tenant.",
        "",
    ]
    out += ["## Targets", "", *targets(runs), ""]
    for s in reversed(SCALES):
        if s not in runs:
            continue
        out += [
            f"## Results: {s}",
            "",
            *scenario_table(runs[s]),
            "",
            f"### Floors ({s}, same run)",
            "",
            *floor_table(runs[s]),
            "",
        ]
        rss = runs[s]["rss"]
        out += [
            "RSS (VmRSS peak per process, MB): "
            + "; ".join(f"{x['label']}: workers ≤ {f(x['worker_peak_mb'])}" for x in rss),
            "",
        ]
    if plot(runs, DOCS / "performance.png"):
        out += [
            "## Latency against dataset size",
            "",
            "![p50/p99 of the read scenarios by dataset size](performance.png)",
            "",
        ]
    out += ["## Server comparison: uvicorn (uvloop, httptools) vs granian, recent scenario", ""]
    compared = [s for s in reversed(SCALES) if runs.get(s, {}).get("servers")]
    if not compared:
        out += ["Not measured yet (`python bench/run.py --servers`).", ""]
    for s in compared:
        src = runs[s].get("servers_from") or {}
        when = (
            (
                f", measured {src.get('started')} with the service at "
                f"{src.get('service_commit') or 'a commit before 844098e'}"
            )
            if src
            else ""
        )
        out += [f"### {s} (`{runs[s]['_file']}`{when})", "", *servers_table(runs[s]), ""]
    for s in reversed(SCALES):
        if runs.get(s, {}).get("servers_custom_plans"):
            out += [
                f"### {s}, service patched with `plan_cache_mode=force_custom_plan`",
                "",
                "The same comparison against a scratch copy of `src/` whose engine sets "
                "`plan_cache_mode=force_custom_plan` (see the analysis), so that the listing "
                "is not bound by the generic plan and the servers show.",
                "",
                *servers_table(runs[s], "servers_custom_plans"),
                "",
            ]
    for s in reversed(SCALES):
        explained = runs.get(s)
        if explained and explained.get("explain"):
            out += [
                f"## EXPLAIN (ANALYZE, BUFFERS) of each read statement ({s})",
                "",
                "Compiled from the service's own SQLAlchemy statements (`sessions/store.py`, "
                "`contacts/store.py`, `auth/store.py`) with the bench tenant's values.",
                "",
            ]
            for name, text in explained["explain"].items():
                out += [
                    f"### {name}",
                    "",
                    "```sql",
                    explained["statements"][name],
                    "```",
                    "",
                    "Plan for the values (EXPLAIN with parameters):",
                    "",
                    "```",
                    text,
                    "```",
                    "",
                ]
                generic = (explained.get("explain_generic") or {}).get(name)
                if generic and "$1" in generic:
                    out += [
                        "The same statement prepared, after six executions under the default "
                        "`plan_cache_mode` (PostgreSQL switched to a generic plan; the service "
                        "ran this before it set `force_custom_plan`):",
                        "",
                        "```",
                        generic,
                        "```",
                        "",
                    ]
            break
    out += ingest_section()
    findings = HERE / "findings.md"
    if findings.exists():
        out += [findings.read_text().rstrip(), ""]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Write the document (and the plot)."""
    runs = newest()
    DOCS.mkdir(parents=True, exist_ok=True)
    (DOCS / "performance.md").write_text(render(runs))
    print(f"wrote {DOCS / 'performance.md'}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
