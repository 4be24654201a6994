"""The cohort at a glance: OUT/report.html, one self-contained file (plots embedded as PNG)."""
from __future__ import annotations

import base64
import html
import io
import os
import statistics
import time
from collections import Counter, defaultdict
from pathlib import Path

from grader.gradebook import flags_of
from grader.syllabus import CHAPTERS


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def preload() -> None:
    """Import the plotting library now (`grader grade` does while its zygote warms up)."""
    from grader.process import one_blas_thread
    one_blas_thread()
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot  # noqa: F401
    import matplotlib.ticker  # noqa: F401


def _plots(records: list[dict]) -> dict[str, str]:
    preload()
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    plots = {}
    chapters = sorted({c for r in records for c in r["extra_data"].get("chapters", {})})
    if chapters:
        cols = min(3, len(chapters))
        rows = (len(chapters) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
        for ax, c in zip(axes.flat, chapters):
            scores = [r["extra_data"]["chapters"][c]["score"] for r in records if c in r["extra_data"]["chapters"]]
            top = max(r["extra_data"]["chapters"][c]["max_score"] for r in records if c in r["extra_data"]["chapters"])
            ax.hist(scores, bins=min(20, max(5, int(top) + 1)), range=(0, max(top, 1)), color="#4c72b0")
            ax.set_title(f"ch{c}: score out of {top:g}")
            ax.set_ylabel("students")
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        for ax in list(axes.flat)[len(chapters):]:
            ax.axis("off")
        fig.tight_layout()
        plots["scores"] = _png(fig)

    passed: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        for t in r.get("tests", []):
            if "status" not in t:  # skipped (a GPU test without a GPU): not counted
                continue
            task = t.get("tags", ["?"])[0]
            passed[task][1] += 1
            passed[task][0] += t.get("status") == "passed"
    if passed:
        order = [t for c in CHAPTERS.values() for t in c.task_ids()]
        tasks = sorted(passed, key=lambda t: (order.index(t) if t in order else len(order), t))
        rates = [100.0 * passed[t][0] / passed[t][1] for t in tasks]
        fig, ax = plt.subplots(figsize=(7, 0.3 * len(tasks) + 1))
        ax.barh(tasks, rates, color="#55a868")
        ax.set_xlim(0, 100)
        ax.invert_yaxis()
        ax.set_xlabel("tests passed (%)")
        ax.set_title("pass rate per task")
        plots["tasks"] = _png(fig)

    slow = _durations(records)
    if slow:
        top = slow[:15]
        fig, ax = plt.subplots(figsize=(7, 0.3 * len(top) + 1))
        ax.barh([n.split("::")[-1][:50] for n, _, _ in top], [m for _, m, _ in top], color="#c44e52")
        ax.invert_yaxis()
        ax.set_xlabel("mean seconds per submission")
        ax.set_title("slowest tests")
        plots["slow"] = _png(fig)
    return plots


def _durations(records: list[dict]) -> list[tuple[str, float, float]]:
    """(test, mean s, max s), slowest first."""
    seen: dict[str, list[float]] = defaultdict(list)
    for r in records:
        for ch in r["extra_data"].get("chapters", {}).values():
            for nodeid, d in ch.get("durations", {}).items():
                seen[nodeid].append(float(d))
    rows = [(n, statistics.mean(v), max(v)) for n, v in seen.items() if v]
    return sorted(rows, key=lambda x: -x[1])


def _most_failed(records: list[dict]) -> list[tuple[str, int, int, str]]:
    fails: Counter = Counter()
    total: Counter = Counter()
    messages: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        for t in r.get("tests", []):
            if "status" not in t:
                continue
            total[t["name"]] += 1
            if t.get("status") != "passed":
                fails[t["name"]] += 1
                messages[t["name"]][t.get("output", "")[:160]] += 1
    return [(name, n, total[name], messages[name].most_common(1)[0][0]) for name, n in fails.most_common(20)]


def write_report(out: Path, records: list[dict]) -> Path:
    esc = html.escape
    plots = _plots(records) if records else {}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Cohort report</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:left;vertical-align:top}th{background:#f3f3f3}.num{text-align:right}"
        ".flag{color:#b00}</style></head><body>",
        f"<h1>Cohort report</h1><p>{len(records)} submissions, generated "
        f"{esc(time.strftime('%Y-%m-%d %H:%M:%S'))}.</p>",
    ]
    for key, title in (("scores", "Score distribution per chapter"), ("tasks", "Pass rate per task"),
                       ("slow", "Slowest tests")):
        if key in plots:
            parts.append(f"<h2>{title}</h2><img alt='{esc(title)}' src='{plots[key]}'>")
    failed = _most_failed(records)
    if failed:
        parts.append("<h2>Most-failed tests</h2><table><tr><th>test</th><th>failed</th>"
                     "<th>most common message</th></tr>")
        for name, n, total, message in failed:
            parts.append(f"<tr><td>{esc(name)}</td><td class='num'>{n} / {total}</td><td>{esc(message)}</td></tr>")
        parts.append("</table>")
    slow = _durations(records)[:15]
    if slow:
        parts.append("<h2>Slowest tests</h2><table><tr><th>test</th><th>mean s</th><th>max s</th></tr>")
        for n, mean, top in slow:
            parts.append(f"<tr><td>{esc(n)}</td><td class='num'>{mean:.3f}</td><td class='num'>{top:.3f}</td></tr>")
        parts.append("</table>")
    chapters = sorted({c for r in records for c in r["extra_data"].get("chapters", {})})
    parts.append("<h2>Students</h2><table><tr><th>student</th>"
                 + "".join(f"<th>ch{c}</th>" for c in chapters) + "<th>total</th><th>flags</th></tr>")
    for r in records:
        chs = r["extra_data"].get("chapters", {})
        cells = "".join(f"<td class='num'>{chs[c]['score']:g}</td>" if c in chs else "<td></td>" for c in chapters)
        parts.append(f"<tr><td>{esc(r['extra_data']['student'])}</td>{cells}"
                     f"<td class='num'>{r['score']:g} / {r['extra_data'].get('max_score', 0):g}</td>"
                     f"<td class='flag'>{esc(flags_of(r))}</td></tr>")
    parts.append("</table></body></html>")
    path = out / "report.html"
    tmp = out / f".report.html.{os.getpid()}.tmp"
    tmp.write_text("\n".join(parts), encoding="utf-8")
    os.replace(tmp, path)
    return path
