"""index.html: one offline page linking every figure, table and interactive map of a run.

Everything is referenced by relative path inside the run directory (plotly.js included), so
the folder can be zipped, moved and opened without a network.
"""

import html
from pathlib import Path

import pandas as pd

from imgexp.atomic import write_text_atomic

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{margin-bottom:0}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee}.grid{display:flex;flex-wrap:wrap;gap:1em}
.grid figure{margin:0;flex:1 1 360px}.note{color:#555;font-size:.9em}nav a{margin-right:1em}
"""


def _table(frame: pd.DataFrame, links: dict[str, str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for _, row in frame.iterrows():
        cells = []
        for col, value in row.items():
            text = f"{value:.3f}" if isinstance(value, float) else str(value)
            text = html.escape(text)
            if links and col in links:
                text = f'<a href="{html.escape(links[col].format(**row))}">{text}</a>'
            cells.append(f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _figure(src: str, caption: str, link: str | None = None) -> str:
    img = f'<img src="{html.escape(src)}" alt="{html.escape(caption)}">'
    if link:
        img = f'<a href="{html.escape(link)}">{img}</a>'
    return f"<figure>{img}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _layers_section(layers: list[dict]) -> str:
    parts = []
    for layer in layers:
        figs = [_figure(layer["map_png"], f"PCA map of {layer['name']}", layer["map_html"])]
        if layer.get("k_png"):
            figs.append(_figure(layer["k_png"], f"choice of k for {layer['name']}"))
        parts.append(f"<h3 id=\"{html.escape(layer['file'])}\">{html.escape(layer['name'])}"
                     f"</h3><p><a href=\"{html.escape(layer['map_html'])}\">interactive map"
                     f"</a> · activations: <a href=\"{html.escape(layer['npy'])}\">"
                     f"{html.escape(layer['npy'])}</a></p><div class=\"grid\">"
                     + "".join(figs) + "</div>")
    return "".join(parts)


def write_index(out: Path, summary: dict, purity: pd.DataFrame, layers: list[dict],
                least_typical: pd.DataFrame, attributions: list[dict], ood: dict | None) -> Path:
    facts = pd.DataFrame([{"": k, "value": v} for k, v in summary.items()])
    sections = [
        ("summary", "Run", _table(facts)),
        ("purity", "How separable are the classes at each depth",
         "<p class=note>k-means per layer on standardised, globally pooled activations. "
         "Purity: share of images whose cluster's majority class is their own; "
         "purity_at_num_classes uses k = number of classes at every layer, so depths compare "
         "fairly. NMI: normalised mutual information of clusters and classes.</p>"
         + _table(purity) + '<p><a href="clustering/purity.csv">purity.csv</a> · '
         '<a href="clustering/clusters.csv">cluster of every image per layer</a></p>'),
        ("paths", "Paths through the layers",
         '<p><a href="paths/paths.html">parallel-categories diagram</a> (interactive) · '
         '<a href="paths/paths.csv">every path</a> · '
         '<a href="paths/least_typical.csv">least typical paths</a></p><p class=note>'
         "typicality: how often images predicted as the same class share this image's "
         "cluster, averaged over layers; foreign_layers: layers where the image sits in a "
         "cluster owned by another class than the predicted one.</p>"
         + _table(least_typical)),
        ("maps", "Layer maps (PCA)", _layers_section(layers)),
        ("attribution", "Why these predictions (LIME and Grad-CAM)",
         "<p class=note>LIME: superpixels whose presence pushes the predicted class up "
         "(yellow borders; weights in the bar chart); Grad-CAM: gradient-weighted activation "
         "of the last spatial block for the predicted class.</p><div>"
         + "".join(_figure(a["png"], a["caption"]) for a in attributions) + "</div>"),
    ]
    if ood:
        sections.append(("ood", "Doubt on an unseen class",
                         _figure(ood["png"], "confidence: known vs unseen class")
                         + _table(pd.DataFrame([ood["stats"]]))
                         + '<p><a href="ood/ood_predictions.csv">predictions and clusters '
                           "of the unseen-class images</a> (they also appear as grey "
                           "triangles on every layer map)</p>"))
    nav = "".join(f'<a href="#{key}">{html.escape(title)}</a>' for key, title, _ in sections)
    body = "".join(f'<h2 id="{key}">{html.escape(title)}</h2>{content}'
                   for key, title, content in sections)
    page = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>imgexp explain: "
            f"{html.escape(str(summary.get('checkpoint', '')))}</title><style>{STYLE}</style>"
            f"</head><body><h1>Explaining a model</h1><nav>{nav}</nav>{body}</body></html>")
    return write_text_atomic(out / "index.html", page)
