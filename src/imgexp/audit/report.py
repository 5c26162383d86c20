"""The audit's files: one CSV per finding, review.csv (every flagged image, an empty decision
column for `imgexp-prepare prepare.review=`), and report.html, one offline page (thumbnails
inlined as data URIs) with the counts, the galleries and links to the CSVs."""

import base64
import html
import io
from pathlib import Path

import pandas as pd

from imgexp.atomic import write_frame_atomic, write_text_atomic
from imgexp.data.image_io import open_image
from imgexp.data.splits import Sample

PAIR_COLUMNS = ["path_a", "path_b", "label_a", "label_b", "split_a", "split_b", "distance",
                "kind", "group"]
THUMB = 96


def write_tables(run_dir: Path, samples: list[Sample], classes: list[str], pairs: list[dict],
                 issues: list, labels: dict, shortcuts: list[dict],
                 unreadable: list[tuple[str, str]]
                 ) -> dict:
    s = samples
    dup = pd.DataFrame([(s[p["i"]].path, s[p["j"]].path, s[p["i"]].label, s[p["j"]].label,
                         s[p["i"]].split, s[p["j"]].split, p["distance"], p["kind"], p["group"])
                        for p in pairs], columns=PAIR_COLUMNS)
    leaks = dup[(dup.split_a != dup.split_b) & (dup.split_a != "") & (dup.split_b != "")]
    quality = pd.DataFrame([(s[i].path, issue, round(score, 4)) for i, issue, score in issues],
                           columns=["path", "issue", "score"])
    label_rows = pd.DataFrame([(s[i].path, s[i].label, classes[j], round(score, 4))
                               for i, j, score in labels["issues"]],
                              columns=["path", "given_label", "suggested_label", "score"])
    for name, frame in (("near_duplicates", dup), ("leaks", leaks), ("quality", quality),
                        ("label_issues", label_rows),
                        ("correlations", pd.DataFrame(shortcuts, columns=[
                            "property", "balanced_accuracy", "chance", "shortcut"])),
                        ("unreadable", pd.DataFrame(unreadable, columns=["path", "reason"]))):
        write_frame_atomic(frame, run_dir / f"{name}.csv")
    findings: dict[str, list[str]] = {}
    for r in dup.itertuples():
        for path, other in ((r.path_a, r.path_b), (r.path_b, r.path_a)):
            findings.setdefault(path, []).append(f"{r.kind} duplicate of {other} (group {r.group})")
    for r in quality.itertuples():
        findings.setdefault(r.path, []).append(f"quality: {r.issue}")
    for r in label_rows.itertuples():
        findings.setdefault(r.path, []).append(f"label: maybe {r.suggested_label}")
    info = {x.path: x for x in samples}
    review = pd.DataFrame([(p, info[p].label, info[p].split, "; ".join(f), "")
                           for p, f in sorted(findings.items())],
                          columns=["path", "label", "split", "findings", "decision"])
    write_frame_atomic(review, run_dir / "review.csv")
    return {"leaks": len(leaks), "review": len(review)}


def _thumb(root: Path, path: str) -> str:
    try:
        img = open_image(root / path, THUMB)
    except Exception:  # noqa: BLE001 - a thumbnail that fails is left blank, the row stays
        return ""
    img.thumbnail((THUMB, THUMB))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _figure(root: Path, path: str, caption: str) -> str:
    return (f'<figure><img src="{_thumb(root, path)}" alt="{html.escape(path)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def write_report(run_dir: Path, root: Path, samples: list[Sample], summary: dict,
                 limit: int) -> Path:
    read = lambda name: pd.read_csv(run_dir / f"{name}.csv", keep_default_na=False)  # noqa: E731
    sections = []
    for name, title in (("near_duplicates", "Near-duplicates"), ("leaks", "Leaks across splits")):
        frame = read(name)
        items = [f'<div class="pair">{_figure(root, r.path_a, f"{r.label_a} · {r.split_a} · {r.path_a}")}'
                 f'{_figure(root, r.path_b, f"{r.label_b} · {r.split_b} · {r.path_b}")}'
                 f'<p>{r.kind}, distance {r.distance}, group {r.group}</p></div>'
                 for r in frame.head(limit).itertuples()]
        sections.append((name, title, len(frame), items))
    quality = read("quality")
    sections.append(("quality", "Poor images", len(quality),
                     [_figure(root, r.path, f"{r.issue} ({r.score}) · {r.path}")
                      for r in quality.head(limit).itertuples()]))
    label = read("label_issues")
    sections.append(("label_issues", "Likely label errors", len(label),
                     [_figure(root, r.path, f"{r.given_label} → {r.suggested_label} "
                              f"({r.score}) · {r.path}") for r in label.head(limit).itertuples()]))
    most = max(summary["classes"].values())
    bars = "".join(f'<div class="bar"><span>{html.escape(str(c))}</span><b style="width:'
                   f'{300 * n / most:.0f}px"></b>{n}</div>'
                   for c, n in sorted(summary["classes"].items()))
    note = summary["label_issues"].get("check") or summary["label_issues"].get("note")
    shortcut_names = (f" ({html.escape(', '.join(summary['shortcuts']))})"
                      if summary["shortcuts"] else "")
    body = [f"<h1>Data audit of {html.escape(summary['root'])}</h1>",
            f"<p>{summary['audited']} images audited, {summary['unreadable']} unreadable "
            '(<a href="unreadable.csv">unreadable.csv</a>). Label check: '
            f"{html.escape(str(note))}. Decisions go in <a href=\"review.csv\">review.csv</a>. "
            'Image properties that predict the label (a shortcut a model would learn): '
            f'{len(summary["shortcuts"])}{shortcut_names} of {len(read("correlations"))} tested '
            '(<a href="correlations.csv">correlations.csv</a>).</p>',
            '<table id="counts"><tr><th>finding</th><th>count</th><th>file</th></tr>']
    body += [f'<tr data-finding="{n}"><td>{t}</td><td>{count}</td>'
             f'<td><a href="{n}.csv">{n}.csv</a></td></tr>' for n, t, count, _ in sections]
    body.append('</table><h2>Classes</h2><div id="classes">' + bars + "</div>")
    for name, title, count, items in sections:
        shown = f" (first {limit})" if count > limit else ""
        body.append(f'<h2>{title}: {count}{shown}</h2><div class="gallery" id="{name}">'
                    + "".join(items) + "</div>")
    style = ("body{font-family:sans-serif;margin:1em}figure{display:inline-block;margin:4px;"
             f"width:{THUMB + 20}px;font-size:11px;word-break:break-all}}img{{max-width:{THUMB}px}}"
             ".pair{display:inline-block;border:1px solid #ccc;margin:4px;padding:4px}"
             ".bar b{display:inline-block;height:12px;background:#4a7;margin:0 6px}"
             ".bar span{display:inline-block;width:6em}td,th{padding:2px 8px}")
    page = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>imgexp audit</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>")
    return write_text_atomic(run_dir / "report.html", page)
