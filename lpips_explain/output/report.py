"""Report writers: strict JSON, self-contained offline HTML pages, and output folders with maps.

Writers return ``str`` or write files and return their paths; they never touch streamlit.
The HTML embeds plotly.js once, inline, and every image as a ``data:`` URI, so a report
opens offline and loads nothing from the network.
"""

from __future__ import annotations

import base64
import functools
import gzip
import html
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from lpips_explain import notices
from lpips_explain.analyses.pair.categories import category_text
from lpips_explain.analyses.pair.explanation import category_of
from lpips_explain.analyses.pair.map_scale import hottest_window, scale_for
from lpips_explain.output import figures as plots
from lpips_explain.output import imaging, palette, static
from lpips_explain.output.compare import compare_html
from lpips_explain.output.scale import SCALE_CSS, result_scale_html
from lpips_explain.output.serialize import dumps, jsonable, to_json

__all__ = [
    "html_report",
    "html_triplet_report",
    "jsonable",
    "to_json",
    "write_explanation",
    "write_triplet",
]

_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
IMAGE_SIDE = 320  # photos in a report: at most this many pixels on the longer side
MAP_SIDE = 128  # maps in a report's charts: averaged down to at most this many pixels
CHART_SIDE = 420  # maps in a report's charts are drawn this many pixels wide

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1200px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
.distance{font-size:2.2em;font-weight:600;margin:.2em 0}
.distance .category{font-size:.55em;font-weight:400;color:#555;margin-left:.5em}
.meta{color:#555} .warnings li{color:#8a5300}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ddd;padding:.3em .7em;
text-align:left} th{background:#f6f6f6}
.images{display:flex;gap:1em;flex-wrap:wrap} .images figure{margin:0}
.images img{max-width:360px;width:100%;border:1px solid #ccc}
figcaption{color:#555;font-size:.9em;max-width:900px} pre{background:#f6f6f6;padding:1em;
overflow:auto;font-size:.8em}
.plot{margin:1em 0 2em 0} .nofig{color:#8a5300;font-size:.9em;padding:.5em 0}
.card{border:1px solid #ddd;border-radius:8px;padding:1em 1.2em;margin:.6em 0 1em 0}
.card .images{flex-wrap:nowrap} .card .images figure{flex:1 1 0;min-width:0;max-width:340px}
.card .images img{width:100%;max-width:none}
.card .distance{margin-top:0}
.verdict{font-size:1.1em;margin:.2em 0 .6em 0}
.trunk{color:#8a5300} details.more{margin:1em 0} details.more>summary{cursor:pointer;
font-weight:600}
.params td,.params th{font-size:.85em}
"""

# plotly.js (4.8 MB) travels gzip-compressed and base64-encoded (about 2 MB) and is unpacked
# by the browser's own DecompressionStream: the report stays one offline file, well under
# 3 MB. A browser without DecompressionStream says so; images, numbers and text remain.
_LOADER_JS = """
(function(){
  var figs=[].slice.call(document.querySelectorAll('script.lx-fig'));
  function fail(msg){figs.forEach(function(s){var d=document.getElementById(s.dataset.target);
    d.textContent=msg;d.className='nofig';d.style.height='auto';});}
  if(!figs.length)return;
  if(!('DecompressionStream' in window)){fail('This browser cannot unpack the embedded '+
    'charts (no DecompressionStream); the images, numbers and text of the report are '+
    'complete without them.');return;}
  var b64=document.getElementById('lx-plotly-gz').textContent.trim();
  var bin=atob(b64),bytes=new Uint8Array(bin.length);
  for(var i=0;i<bin.length;i++)bytes[i]=bin.charCodeAt(i);
  var stream=new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
  new Response(stream).text().then(function(code){
    (0,eval)(code);
    figs.forEach(function(s){var f=JSON.parse(s.textContent);
      Plotly.newPlot(s.dataset.target,f.data,f.layout,CONFIG);});
    [].slice.call(document.querySelectorAll('details')).forEach(function(d){
      d.addEventListener('toggle',function(){if(!d.open)return;
        [].slice.call(d.querySelectorAll('.plotly-graph-div')).forEach(function(g){
          if(g.data)Plotly.Plots.resize(g);});});});
  }).catch(function(e){fail('The charts could not be drawn here: '+e);});
})();
"""


@functools.lru_cache(maxsize=1)
def _plotly_gz_b64() -> str:
    import plotly.offline

    js = plotly.offline.get_plotlyjs().encode("utf-8")
    return base64.b64encode(gzip.compress(js, compresslevel=9, mtime=0)).decode("ascii")


# --------------------------------------------------------------------------- HTML pieces


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _list(items: Iterable[str], css: str = "") -> str:
    """A bulleted list; nothing at all for no items (a section without items is left out)."""
    items = list(items)
    if not items:
        return ""
    cls = f' class="{css}"' if css else ""
    return f"<ul{cls}>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>"


def _section(title: str, content: str) -> str:
    return f"<h2>{_e(title)}</h2>{content}" if content else ""


def _inputs_table(inputs: Any, labels: list[str]) -> str:
    rows = []
    for i, lab in enumerate(labels):
        d = inputs.describe(i)
        size = d.get("original_size") or ["?", "?"]
        rows.append(f"<tr><td>{_e(lab)}</td><td>{_e(d.get('name'))}</td>"
                    f"<td>{_e(size[1])}x{_e(size[0])}</td><td>{_e(d.get('mode'))}</td>"
                    f"<td>{_e(d.get('format') or '-')}</td></tr>")
    h, w = inputs.size
    notes = list(inputs.align.notes)
    return ("<table><tr><th>image</th><th>file</th><th>original size (width x height)</th>"
            "<th>mode</th><th>format</th></tr>" + "".join(rows) + "</table>"
            f'<p class="meta">Compared at {w}x{h} px (width x height), size policy '
            f"<code>{_e(inputs.align.policy)}</code>.</p>" + _list(notes))


def _lean_note(size: tuple[int, int]) -> str:
    h, w = size
    shrunk = max(h, w) > IMAGE_SIDE
    return ('<p class="meta">To keep this file small, photos are shown '
            + (f"downsampled to at most {IMAGE_SIDE} px (from {w}x{h}) and " if shrunk else "")
            + f"JPEG-compressed, and the maps in the charts are averaged down to at most "
            f"{MAP_SIDE} px. Every number is computed at full resolution; the command line "
            f"(<code>lpips-explain explain --out DIR</code>) writes the full-resolution maps."
            "</p>")


def _images_html(images: list[tuple[str, np.ndarray]]) -> str:
    figs = "".join(
        f'<figure><img alt="{_e(cap)}" src="'
        f'{imaging.jpeg_data_uri(imaging.downsample_image(im, IMAGE_SIDE))}">'
        f"<figcaption>{_e(cap)}</figcaption></figure>" for cap, im in images)
    return f'<div class="images">{figs}</div>'


def _compare_html(a: np.ndarray, b: np.ndarray, heat: np.ndarray, names: tuple[str, str],
                  map_label: str, uid: str, zmax: float | None = None) -> str:
    small_a = imaging.downsample_image(a, IMAGE_SIDE)
    small_b = imaging.downsample_image(b, IMAGE_SIDE)
    layer = imaging.map_rgba(imaging.downsample_map(heat, MAP_SIDE), fade=True, zmax=zmax)
    return compare_html(small_a, small_b, map_layer=layer, names=names, map_label=map_label,
                        display_width=560, uid=uid, jpeg=True, jpeg_quality=85)


def _figures_html(figures: list[tuple[str, Any]], *, start: int = 0,
                  loader: bool = True) -> str:
    """Each figure under a heading with its one caption; plotly.js is embedded once,
    compressed (``loader``: in the last group of a page), and draws every figure from its
    JSON when the page opens. ``start`` numbers a later group's figures after an earlier's."""
    if not figures:
        return ""
    parts = []
    for i, (heading, fig) in enumerate(figures, start=start):
        width = fig.layout.width
        height = fig.layout.height or 480
        style = (f"width:{int(width)}px;" if width else "width:100%;") + f"height:{int(height)}px"
        caption = plots.caption_of(fig)
        # plotly.js's own defaults (white, light grid, as in the app) instead of a ~6 kB
        # template copied into every figure.
        fig.update_layout(template=None)
        # Without the template, plotly sizes no margin to its labels: long tick labels
        # (the sensitivity bars' perturbations) were cut at the figure's edge.
        fig.update_xaxes(automargin=True)
        fig.update_yaxes(automargin=True)
        parts.append(
            f'<section class="plot"><h3>{_e(heading)}</h3>'
            f'<div id="lx-fig-{i}" class="plotly-graph-div" style="{style}"></div>'
            f'<script type="application/json" class="lx-fig" data-target="lx-fig-{i}">'
            f"{fig.to_json()}</script>"
            + (f"<figcaption>{_e(caption)}</figcaption>" if caption else "") + "</section>")
    if loader:
        parts.append(_loader_html())
    return "".join(parts)


def _loader_html() -> str:
    js = _LOADER_JS.replace("CONFIG", json.dumps(_PLOTLY_CONFIG))
    return (f'<script id="lx-plotly-gz" type="application/octet-stream">'
            f"{_plotly_gz_b64()}</script><script>{js}</script>")


def _page(title: str, body: str) -> str:
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{_CSS}{SCALE_CSS}</style></head><body>"
            f"{body}</body></html>\n")


def _backbone_line(result: Any, net: str, version: str) -> str:
    bb = result.backbone  # WeightsInfo: never assume a trunk is perceptual
    return (f'<p class="meta">LPIPS {_e(net)}, v{_e(version)}; backbone weights '
            f"<code>{_e(bb.spec)}</code>: {_e(bb.state.short)}</p>")


def _json_details(text: str) -> str:
    return (f"<h2>Data</h2><details><summary>The JSON of this report</summary>"
            f"<pre>{_e(text)}</pre></details>")


def _equivalents_html(expl: Any) -> str:
    """The distortion equivalents as a table: each strength with its evaluated distance."""
    items = expl.equivalents or ()
    if not items:
        return ""
    ref, other = expl.reference_name, expl.explained_name
    rows = "".join(
        f"<tr><td>{_e(e.label)}</td><td>{_e(e.text)}</td><td>{_e(e.unit)}</td>"
        f"<td>{'yes' if e.reached else 'no'}</td><td>{e.distance:.4f}</td></tr>" for e in items)
    return (f'<p class="meta">Distortions of {_e(ref)} that LPIPS finds as far from {_e(ref)} '
            f"as {_e(other)} is (d = {items[0].target:.4f}), each strength found by bisection "
            "on evaluated distances; a distortion not reached is shown at the strongest "
            "strength tried.</p><table><tr><th>distortion</th><th>strength</th><th>unit</th>"
            f"<th>reached</th><th>d({_e(ref)}, distorted {_e(ref)})</th></tr>{rows}</table>")


# --------------------------------------------------------------------------- HTML reports


def _explanation_figures(expl: Any) -> list[tuple[str, Any]]:
    dec = expl.decomposition
    _, target, ref_name, target_name = imaging.explained_images(expl)
    small = {"display_width": CHART_SIDE, "max_side": MAP_SIDE}
    figs: list[tuple[str, Any]] = [
        ("Layer waterfall", plots.layer_waterfall(dec)),
        (f"Spatial map over {target_name}, all layers",
         plots.spatial_map_figure(dec, target, layer=None, upsample="bilinear",
                                  scale=scale_for(expl), **small)),
    ]
    if dec.layers:
        top = max(dec.layers, key=lambda lay: lay.distance)
        figs.append((f"Spatial map of {top.name} at its own resolution",
                     plots.spatial_map_figure(dec, target, layer=top.index, upsample="none",
                                              scale=scale_for(expl, top.index, "none"),
                                              **small)))
        if top.top_channels:
            figs.append((f"Top channels of {top.name}",
                         plots.channel_grid(top, max_side=MAP_SIDE // 4)))
    attr = expl.attribution
    if attr is not None:
        figs.append(("Attribution (signed)", plots.attribution_figure(
            attr, target, view="signed", name=target_name, **small)))
    sens = expl.sensitivity
    if sens is not None:
        figs.append(("Sensitivity", plots.sensitivity_bars(sens, explained=target_name)))
    if expl.repair is not None:
        figs.append(("Repair curve", plots.repair_curve(expl.repair, repaired=target_name,
                                                        source=ref_name)))
    return figs


def _sweep_figures(expl: Any) -> list[tuple[str, Any]]:
    """One chart per perturbation swept (behind a <details>: there are about a dozen)."""
    sens = expl.sensitivity
    return [] if sens is None else [(f"Sweep: {s.label}", plots.sweep_figure(s))
                                   for s in sens.sweeps]


def _card_html(expl: Any) -> str:
    """The report's first screen, as the app's verdict card: the distance and its category,
    where it falls, the trunk's state, and A, B and the map of where the distance is."""
    dec = expl.decomposition
    info = expl.category_info
    verdict = (info.placement[:1].upper() + info.placement[1:] + "."
               if getattr(info, "placement", None) else "")
    bb = expl.backbone
    names = {expl.reference_name: "reference", expl.explained_name: "explained"}
    a, b = imaging.as_uint8_image(expl.a), imaging.as_uint8_image(expl.b)
    heat, mscale = dec.spatial_map(None, "bilinear"), scale_for(expl)
    target = imaging.downsample_image(imaging.as_uint8_image(expl.explained), IMAGE_SIDE)
    over = imaging.outline(imaging.overlay_image(target, heat, zmax=mscale.limit),
                           hottest_window(heat).edges)
    which = "the same scale for every pair" if mscale.fixed else "this pair's own scale"
    bar = imaging.colour_bar_html(0.0, mscale.limit, f"Where the distance is, over "
                                  f"{expl.explained_name} (box: its hottest part); {which}")
    figs = "".join(
        f'<figure><img alt="{_e(cap)}" src="'
        f'{imaging.jpeg_data_uri(imaging.downsample_image(im, IMAGE_SIDE))}">'
        f"<figcaption>{_e(cap)}</figcaption></figure>"
        for cap, im in ((f"A ({names['A']})", a), (f"B ({names['B']})", b)))
    figs += (f'<figure><img alt="distance map over {_e(expl.explained_name)}" '
             f'src="{imaging.jpeg_data_uri(over)}">{bar}</figure>')
    state = "" if bb.perceptual else f'<p class="trunk">{_e(bb.state.short)}</p>'
    scale = result_scale_html([(f"d = {dec.distance:.4f}", dec.distance)], dec.net,
                              dec.version, bb, getattr(expl, "lin_heads", None), info.limits)
    return ('<section class="card" id="card">'
            f'<p class="distance">{dec.distance:.4f}<span class="category">'
            f"{_e(category_text(expl.category))}</span></p>" + scale
            + (f'<p class="verdict">{_e(verdict)}</p>' if verdict else "")
            + state + f'<div class="images">{figs}</div></section>')


def _opinions_html(opinions: Any) -> str:
    """The second opinions: each metric on its own scale, then the sentences the numbers
    support (the app's), then the metrics that could not run and why."""
    if opinions is None or not opinions.opinions:
        return ""
    from lpips_explain.analyses.pair.second_opinions import SCALES

    rows = "".join(
        f"<tr><td>{_e(o.label)}</td><td>{_e(o.net or '-')}</td><td>{_e(o.value_text())}</td>"
        f"<td>{_e(SCALES[o.metric])}</td></tr>" for o in opinions.opinions)
    return ('<p class="meta">The same pair under other metrics, each on its own scale (the '
            "numbers are not comparable across metrics).</p>"
            "<table><tr><th>metric</th><th>trunk</th><th>value</th><th>scale</th></tr>"
            f"{rows}</table>" + _list(opinions.sentences) + _list(opinions.failures, "warnings"))


def html_report(expl: Any) -> str:
    """A self-contained HTML page for one Explanation (opens offline, no external resources)."""
    dec = expl.decomposition
    a, b = imaging.as_uint8_image(expl.a), imaging.as_uint8_image(expl.b)
    target_name = expl.explained_name
    warnings = notices.without(expl.warnings, notices.RANDOM_TRUNK)
    main, sweeps = _explanation_figures(expl), _sweep_figures(expl)
    opinions = expl.second_opinions
    # Sentences the second-opinion section gives are not repeated in the summary.
    said = set(opinions.sentences) if opinions is not None else set()
    body = [
        "<h1>LPIPS explanation</h1>",
        _card_html(expl),
        _backbone_line(expl, dec.net, dec.version),
        _section("Second opinions", _opinions_html(opinions)),
        _section("In plain words", _list(s for s in expl.summary if s not in said)),
        _section("Distortion equivalents", _equivalents_html(expl)),
        _section("Warnings", _list(warnings, "warnings")),
        "<h2>Compare A and B</h2>",
        _compare_html(a, b, dec.spatial_map(None, "bilinear"), ("A", "B"),
                      f"distance map (over {target_name})", "cmp-ab",
                      zmax=scale_for(expl).limit),
        "<h2>Inputs</h2>", _inputs_table(expl.inputs, ["A", "B"]),
        _lean_note(dec.size),
        _section("Figures", _figures_html(main, loader=not sweeps)),
        (f'<details class="more"><summary>How the distance changes with each perturbation '
         f"({len(sweeps)} sweeps)</summary>"
         + _figures_html(sweeps, start=len(main)) + "</details>") if sweeps else "",
        _json_details(to_json(expl)),
    ]
    return _page(f"LPIPS explanation: {dec.distance:.4f} ({category_text(expl.category)})",
                 "".join(body))


def html_triplet_report(tri: Any) -> str:
    """A self-contained HTML page for one TripletExplanation (opens offline)."""
    ims = [imaging.as_uint8_image(t) for t in tri.inputs.tensors[:3]]
    verdict = {"a": "A is closer to REF", "b": "B is closer to REF",
               "tie": "A and B are tied"}.get(tri.closer, tri.closer)
    dec_a, dec_b = tri.decomposition_a, tri.decomposition_b
    small = {"display_width": CHART_SIDE, "max_side": MAP_SIDE}
    maps = [dec.spatial_map(None, "bilinear") for dec in (dec_a, dec_b)]
    zmax = imaging.shared_limit(*maps)
    figs: list[tuple[str, Any]] = [
        ("Per-layer margins", plots.triplet_margin_chart(tri)),
        ("Where A loses and where B loses", plots.margin_map_figure(tri, ims[0], **small)),
        ("Spatial map of d(REF, A) over A",
         plots.spatial_map_figure(dec_a, ims[1], layer=None, upsample="bilinear", zmax=zmax,
                                  **small)),
        ("Spatial map of d(REF, B) over B",
         plots.spatial_map_figure(dec_b, ims[2], layer=None, upsample="bilinear", zmax=zmax,
                                  **small)),
    ]
    attrs = [(n, at, im) for n, at, im in (("A", tri.attribution_a, ims[1]),
                                          ("B", tri.attribution_b, ims[2])) if at is not None]
    azmax = imaging.shared_limit(*[np.asarray(at.signed) for _, at, _ in attrs], symmetric=True) \
        if attrs else None
    for name, attr, im in attrs:
        figs.append((f"Attribution of {name} (signed, one colour scale for both)",
                     plots.attribution_figure(attr, im, view="signed", name=name, zmax=azmax,
                                              **small)))
    if tri.repair is not None:
        loser = (tri.flip.repaired or "b").upper()
        figs.append(("Repair of the losing candidate", plots.repair_curve(
            tri.repair, repaired=loser, source="REF", threshold=tri.flip.rival_distance,
            threshold_label="the other candidate's distance",
            threshold_color=palette.CANDIDATE_B if loser == "A" else palette.CANDIDATE_A,
            mark_area=tri.flip.area if tri.flip.exists else None,
            mark_label="the decision flips")))
    warnings = notices.without(tri.warnings, notices.RANDOM_TRUNK)
    body = [
        "<h1>LPIPS 2AFC explanation</h1>",
        f'<p class="distance">{_e(verdict)}<span class="category">margin {tri.margin:+.4f}'
        "</span></p>",
        f'<p class="meta">d(REF, A) = {tri.distance_a:.4f}, d(REF, B) = {tri.distance_b:.4f}.</p>',
        result_scale_html([("A", tri.distance_a, palette.CANDIDATE_A),
                           ("B", tri.distance_b, palette.CANDIDATE_B)], dec_a.net,
                          dec_a.version, tri.backbone, tri.lin_heads,
                          category_of(tri.distance_a, dec_a.net, dec_a.version, tri.backbone,
                                      tri.lin_heads).limits),
        _backbone_line(tri, dec_a.net, dec_a.version),
        _section("Summary", _list(tri.summary)),
        "<h2>Flip</h2>", f"<p>{_e(tri.flip.statement)}</p>",
        _section("Warnings", _list(warnings, "warnings")),
        "<h2>Inputs</h2>", _inputs_table(tri.inputs, ["REF", "A", "B"]),
        "<h2>Images</h2>", _images_html(list(zip(["REF", "A", "B"], ims, strict=True))),
        _lean_note(tri.inputs.size),
        _section("Figures", _figures_html(figs)),
        _json_details(to_json(tri)),
    ]
    return _page(f"LPIPS 2AFC: {verdict}", "".join(body))


# --------------------------------------------------------------------------- folders


class _Folder:
    """Writes files under one root and remembers them by name, relative to the root."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.files: dict[str, Path] = {}

    def _path(self, name: str, rel: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        self.files[name] = path
        return path

    def write_text(self, name: str, rel: str, text: str) -> None:
        self._path(name, rel).write_text(text, encoding="utf-8")

    def write_bytes(self, name: str, rel: str, data: bytes) -> None:
        self._path(name, rel).write_bytes(data)

    def save_array(self, name: str, rel: str, arr: np.ndarray) -> None:
        np.save(self._path(name, rel), np.asarray(arr))

    def save_map(self, name: str, rel_stem: str, arr: np.ndarray, *,
                 symmetric: bool = False) -> None:
        """The map as .npy (exact values) and as a colour-mapped .png (for people)."""
        self.save_array(name, f"{rel_stem}.npy", arr)
        self.write_bytes(f"{name}_png", f"{rel_stem}.png",
                   imaging.png_bytes(imaging.colorize(arr, symmetric=symmetric)))

    def relative(self) -> dict[str, str]:
        return {k: p.relative_to(self.root).as_posix() for k, p in self.files.items()}

    def write_json(self, name: str, rel: str, data: dict) -> None:
        self._path(name, rel)
        data = {**data, "files": self.relative()}
        self.files[name].write_text(dumps(data) + "\n", encoding="utf-8")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)) or "layer"


def _attribution_maps(folder: _Folder, attr: Any, prefix: str) -> None:
    folder.save_map(f"{prefix}_signed", f"maps/{prefix}_signed", attr.signed, symmetric=True)
    folder.save_map(f"{prefix}_magnitude", f"maps/{prefix}_magnitude", attr.magnitude)


def write_explanation(expl: Any, out_dir: str | Path, *, maps: bool = True) -> dict[str, Path]:
    """Write explanation.json, report.html, summary.png and the maps; return name -> path.

    Maps (with ``maps=True``) go to ``maps/``: every layer's spatial map at its own
    resolution (``spatial_<layer>.npy``), the summed bilinear and mean-preserving maps,
    the attribution maps and the repair gain map when present (.npy plus a .png each).
    The JSON gains a ``files`` key mapping the same names to paths relative to ``out_dir``.
    """
    folder = _Folder(out_dir)
    dec = expl.decomposition
    if maps:
        for lay in dec.layers:
            name = f"spatial_{_safe(lay.name)}"
            folder.save_array(name, f"maps/{name}.npy", dec.spatial_map(lay.index, "none"))
        for up in ("bilinear", "mean_preserving"):
            folder.save_map(f"spatial_sum_{up}", f"maps/spatial_sum_{up}",
                            dec.spatial_map(None, up))
        if expl.attribution is not None:
            _attribution_maps(folder, expl.attribution, "attribution")
        if expl.repair is not None:
            folder.save_map("repair_gain", "maps/repair_gain",
                       expl.repair.gain_map(tuple(dec.size)), symmetric=True)
    folder.write_bytes("summary_png", "summary.png", static.summary_png(expl))
    folder.write_text("report_html", "report.html", html_report(expl))
    folder.write_json("explanation_json", "explanation.json", expl.to_dict())
    return dict(folder.files)


def write_triplet(tri: Any, out_dir: str | Path, *, maps: bool = True) -> dict[str, Path]:
    """Write triplet.json, report.html, summary.png and the maps of A and B; return name -> path."""
    folder = _Folder(out_dir)
    if maps:
        for name, dec in (("a", tri.decomposition_a), ("b", tri.decomposition_b)):
            folder.save_map(f"spatial_{name}_sum_bilinear", f"maps/spatial_{name}_sum_bilinear",
                       dec.spatial_map(None, "bilinear"))
        for name, attr in (("a", tri.attribution_a), ("b", tri.attribution_b)):
            if attr is not None:
                _attribution_maps(folder, attr, f"attribution_{name}")
        rep = tri.repair
        if rep is not None:
            folder.save_map("repair_gain", "maps/repair_gain",
                       rep.gain_map(tuple(tri.decomposition_a.size)), symmetric=True)
    folder.write_bytes("summary_png", "summary.png", static.triplet_png(tri))
    folder.write_text("report_html", "report.html", html_triplet_report(tri))
    folder.write_json("triplet_json", "triplet.json", tri.to_dict())
    return dict(folder.files)
