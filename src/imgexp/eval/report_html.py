"""errors/: a thumbnail of every misclassified image and errors.html, one page that opens
offline (thumbnails linked relatively, no script or style from the network), sortable by any
column and filterable by class pair, with the most frequent confusions on top."""

import html
from dataclasses import dataclass, field
from pathlib import Path

from imgexp.atomic import write_text_atomic
from imgexp.data import UnreadableImage, open_image


@dataclass
class ErrorRow:
    path: Path                      # the source image (absolute)
    true: str
    predicted: str
    confidence: float
    top: list[tuple[str, float]]    # top-k (class, probability)
    neighbours: list[tuple[Path, str, float]] = field(default_factory=list)  # (path, class, sim)


def save_thumbnail(src: Path, dest: Path, size: int) -> bool:
    """Write a PNG thumbnail; False when the source cannot be read any more."""
    try:
        img = open_image(src, size=size)
    except UnreadableImage:
        return False
    img.thumbnail((size, size))
    dest.parent.mkdir(parents=True, exist_ok=True)
    img.save(dest, format="PNG")
    return True


class _Thumbnails:
    """One thumbnail file per distinct source image, named by order of first use."""

    def __init__(self, folder: Path, size: int):
        self.folder, self.size, self.done = folder, size, {}

    def ref(self, src: Path) -> str:
        if src not in self.done:
            dest = self.folder / "images" / f"{len(self.done):05d}_{src.stem[:40]}.png"
            self.done[src] = f"images/{dest.name}" if save_thumbnail(src, dest, self.size) else ""
        return self.done[src]


def pair_label(true: str, predicted: str) -> str:
    return f"{true} \u2192 {predicted}"


def _img(ref: str, alt: str, title: str) -> str:
    if not ref:
        return f'<span class="missing" title="{html.escape(title)}">unreadable</span>'
    return (f'<img src="{html.escape(ref)}" alt="{html.escape(alt)}" '
            f'title="{html.escape(title)}" loading="lazy">')


def _row(i: int, err: ErrorRow, thumbs: _Thumbnails) -> str:
    e = html.escape
    pair = pair_label(err.true, err.predicted)
    top = "<br>".join(f"{e(c)} {p:.3f}" for c, p in err.top)
    cells = [
        f'<td data-v="{i}">{i}</td>',
        f"<td>{_img(thumbs.ref(err.path), err.path.name, str(err.path))}</td>",
        f'<td data-v="{e(err.true)}">{e(err.true)}</td>',
        f'<td data-v="{e(err.predicted)}">{e(err.predicted)}</td>',
        f'<td data-v="{err.confidence:.6f}">{err.confidence:.3f}</td>',
        f"<td>{top}</td>",
    ]
    if err.neighbours:
        near = "".join(
            f'<figure>{_img(thumbs.ref(p), p.name, str(p))}<figcaption>{e(c)} {s:.2f}'
            "</figcaption></figure>" for p, c, s in err.neighbours)
        cells.append(f"<td>{near}</td>")
    cells.append(f'<td class="path" data-v="{e(str(err.path))}">{e(str(err.path))}</td>')
    return f'<tr data-pair="{e(pair)}">{"".join(cells)}</tr>'


def write_error_report(folder: Path, errors: list[ErrorRow], confusions: list[tuple[str, str, int]],
                       title: str, total: int, thumbnail_size: int = 96,
                       figures: list[tuple[str, str]] = ()) -> Path:
    """folder/errors.html + folder/images/; `confusions` = (true, predicted, count), ranked;
    `figures` = (caption, path relative to folder) of the run's plots, shown and linked."""
    thumbs = _Thumbnails(folder, thumbnail_size)
    e = html.escape
    with_neighbours = any(err.neighbours for err in errors)
    headers = ["#", "image", "true", "predicted", "confidence", "top classes"]
    headers += ["nearest gallery images"] if with_neighbours else []
    headers += ["path"]
    sortable = {"#", "true", "predicted", "confidence", "path"}
    head = "".join(f'<th data-col="{k}"{" class=sortable" if h in sortable else ""}>{e(h)}</th>'
                   for k, h in enumerate(headers))
    body = "\n".join(_row(i, err, thumbs) for i, err in enumerate(errors, 1))
    summary = "\n".join(
        f'<tr><td><a href="#" data-pair="{e(pair_label(t, p))}">{e(pair_label(t, p))}</a></td>'
        f"<td>{n}</td></tr>" for t, p, n in confusions)
    plots = "\n".join(
        f'<figure class="plot"><a href="{e(ref)}"><img src="{e(ref)}" alt="{e(caption)}"></a>'
        f"<figcaption>{e(caption)}</figcaption></figure>" for caption, ref in figures)
    options = "".join(f"<option>{e(pair_label(t, p))}</option>" for t, p, _ in confusions)
    page = PAGE.format(title=e(title), n_errors=len(errors), total=total, summary=summary,
                       plots=plots,
                       options=options, head=head, body=body, size=thumbnail_size,
                       half=thumbnail_size * 2 // 3)
    return write_text_atomic(folder / "errors.html", page)


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; vertical-align: middle; }}
th.sortable {{ cursor: pointer; background: #eef; }}
th.sortable:after {{ content: " \\2195"; color: #888; }}
/* small sources (8x8 digits) are scaled up to the thumbnail box, without blurring */
td img {{ width: {size}px; height: {size}px; object-fit: contain; image-rendering: pixelated;
          background: #eee; }}
figure img {{ width: {half}px; height: {half}px; }}
figure {{ display: inline-block; margin: 2px; text-align: center; font-size: 80%; }}
td.path {{ font-size: 75%; color: #555; word-break: break-all; max-width: 30em; }}
.missing {{ color: #a00; }}
#summary td {{ padding: 2px 8px; }}
figure.plot img {{ width: auto; height: auto; max-width: 40em; max-height: 40em; }}
</style></head>
<body>
<h1>{title}</h1>
<p><b id="n-errors">{n_errors}</b> misclassified of {total} images.</p>
<div id="plots">{plots}</div>
<h2>Most frequent confusions (true \u2192 predicted)</h2>
<table id="summary"><tr><th>pair</th><th>errors</th></tr>
{summary}
</table>
<h2>Errors</h2>
<p><label>class pair <select id="pair"><option value="">all</option>{options}</select></label>
<label>path or class contains <input id="text" type="search"></label>
<span id="shown"></span></p>
<table id="errors"><thead><tr>{head}</tr></thead>
<tbody>
{body}
</tbody></table>
<script>
const rows = Array.from(document.querySelectorAll("#errors tbody tr"));
const pair = document.getElementById("pair"), text = document.getElementById("text");
function filter() {{
  const p = pair.value, t = text.value.toLowerCase();
  let shown = 0;
  for (const r of rows) {{
    const ok = (!p || r.dataset.pair === p) && (!t || r.textContent.toLowerCase().includes(t));
    r.style.display = ok ? "" : "none";
    shown += ok;
  }}
  document.getElementById("shown").textContent = shown + " shown";
}}
pair.addEventListener("change", filter);
text.addEventListener("input", filter);
for (const a of document.querySelectorAll("#summary a")) {{
  a.addEventListener("click", ev => {{ ev.preventDefault(); pair.value = a.dataset.pair; filter(); }});
}}
for (const th of document.querySelectorAll("#errors th.sortable")) {{
  th.addEventListener("click", () => {{
    const col = +th.dataset.col, asc = th.dataset.asc !== "1";
    th.dataset.asc = asc ? "1" : "0";
    const key = r => r.children[col].dataset.v;
    const numeric = rows.every(r => key(r) !== "" && !isNaN(key(r)));
    rows.sort((a, b) => {{
      const x = key(a), y = key(b);
      const c = numeric ? x - y : x.localeCompare(y);
      return asc ? c : -c;
    }});
    const tbody = document.querySelector("#errors tbody");
    for (const r of rows) tbody.appendChild(r);
  }});
}}
filter();
</script>
</body></html>
"""
