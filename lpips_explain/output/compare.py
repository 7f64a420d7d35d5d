"""A before/after comparison that works offline: swipe, flicker or side by side over two
images, the distance map as an optional layer, one zoom for all of them.

:func:`compare_html` returns a self-contained HTML fragment (inline CSS, inline JavaScript,
images as ``data:`` URIs; nothing is loaded from the network). With the map layer on, the
photos turn grey, as under every map of the app. The app shows it in an
iframe, the HTML report inlines it. Several fragments may share one page (ids are scoped).
"""

from __future__ import annotations

import html
import json
import re

import numpy as np

from lpips_explain.output.imaging import as_uint8_image, jpeg_data_uri, png_data_uri
from lpips_explain.output.palette import GREY_HIGH, GREY_LOW

__all__ = ["compare_height", "compare_html"]

TOOLBAR_PX = 44
FOOTER_PX = 34
# With the map shown, the photos turn grey as under every map (imaging.grey_photo: luminance
# drawn from GREY_LOW to GREY_HIGH), so that every colour on them is the map's. CSS
# contrast(c) draws v as (v - 0.5) c + 0.5, brightness(b) multiplies: solved for both ends.
GREY_CONTRAST = (GREY_HIGH - GREY_LOW) / (GREY_HIGH + GREY_LOW)
GREY_BRIGHT = (GREY_HIGH + GREY_LOW) / 255


def compare_height(size: tuple[int, int], display_width: int) -> int:
    """The fragment's height in pixels for images of ``size`` (H, W) shown ``display_width``
    wide (an iframe needs it in advance)."""
    h, w = size
    return TOOLBAR_PX + round(display_width * h / w) + FOOTER_PX + 8


_CSS = """
#{uid}{font:13px/1.35 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;
  width:{w}px;user-select:none}
#{uid} .bar{display:flex;flex-wrap:nowrap;gap:4px 10px;align-items:center;height:{tb}px;
  white-space:nowrap;overflow:hidden}
#{uid} .bar label{cursor:pointer;white-space:nowrap}
#{uid} .bar button{font:inherit;padding:1px 8px;border:1px solid #bbb;border-radius:4px;
  background:#fafafa;cursor:pointer}
#{uid} .bar input[type=range]{width:80px;vertical-align:middle}
#{uid} .views{display:flex;gap:0;position:relative}
#{uid} .view{position:relative;overflow:hidden;background:#eee;cursor:grab;touch-action:none}
#{uid} .layer{position:absolute;inset:0;overflow:hidden}
#{uid} .inner{position:absolute;left:0;top:0;transform-origin:0 0}
#{uid} .inner img{position:absolute;left:0;top:0;width:100%;height:100%;display:block}
#{uid} .inner img.map{pointer-events:none}
#{uid}.pixelated .inner img{image-rendering:pixelated}
#{uid}.mapon .inner img.photo{filter:grayscale(1) contrast(GREY_CONTRAST) brightness(GREY_BRIGHT)}
#{uid} .handle{position:absolute;top:0;bottom:0;width:3px;margin-left:-1px;background:#fff;
  box-shadow:0 0 3px rgba(0,0,0,.8);cursor:ew-resize}
#{uid} .handle::after{content:"\\2194";position:absolute;top:50%;left:50%;
  transform:translate(-50%,-50%);background:#fff;border-radius:50%;width:22px;height:22px;
  line-height:22px;text-align:center;box-shadow:0 0 3px rgba(0,0,0,.6);font-size:13px}
#{uid} .tag{position:absolute;top:6px;padding:1px 7px;border-radius:3px;
  background:rgba(0,0,0,.62);color:#fff;font-weight:600;pointer-events:none}
#{uid} .foot{display:flex;justify-content:space-between;gap:10px;align-items:center;
  height:{ft}px;color:#555;font-size:12px;white-space:nowrap;overflow:hidden}
"""

_JS = r"""
(function(){
const root=document.getElementById(UID);
const W=DISPLAY_W, H=DISPLAY_H, NAMES=NAMES_JSON;
const views=[...root.querySelectorAll('.view')], handle=root.querySelector('.handle');
const layerB=root.querySelector('.v1 .lb'), tagA=root.querySelector('.v1 .ta'),
      tagB=root.querySelector('.v1 .tb'), inners=[...root.querySelectorAll('.inner')];
const maps=[...root.querySelectorAll('img.map')], say=root.querySelector('.say');
let mode=MODE, s=1, tx=0, ty=0, cut=0.5, timer=null, showB=false;
function vwh(){return mode==='side'?[W/2,H]:[W,H];}
function home(){s=1;tx=mode==='side'?-W/4:0;ty=0;}
function size(){const side=mode==='side';
  views.forEach((v,i)=>{v.style.width=(side?W/2:W)+'px';v.style.height=H+'px';
    v.style.display=(i===0||side)?'block':'none';});
  inners.forEach(n=>{n.style.width=W+'px';n.style.height=H+'px';});}
function clamp(){const [vw,vh]=vwh();
  tx=Math.min(0,Math.max(vw-W*s,tx));ty=Math.min(0,Math.max(vh-H*s,ty));}
function apply(){clamp();inners.forEach(n=>{n.style.transform=
  'translate('+tx+'px,'+ty+'px) scale('+s+')';});
  root.classList.toggle('pixelated',s>=2);
  root.querySelector('.zoom').textContent=Math.round(s*100)+'%';}
function zoomAt(f,px,py){const s2=Math.min(16,Math.max(1,s*f));
  tx=px-(px-tx)*(s2/s);ty=py-(py-ty)*(s2/s);s=s2;apply();}
function swipe(){if(mode!=='swipe')return;const vw=W;
  layerB.style.clipPath='inset(0 0 0 '+(cut*100)+'%)';handle.style.left=(cut*vw)+'px';}
function setMode(m){mode=m;if(timer){clearInterval(timer);timer=null;}
  const v1=views[0];layerB.style.clipPath='none';layerB.style.display='block';
  handle.style.display=m==='swipe'?'block':'none';
  tagA.style.display=m==='flicker'?'none':'block';tagB.style.display='block';
  if(m==='side'){layerB.style.display='none';tagB.style.display='none';tagA.textContent=NAMES[0];}
  if(m==='swipe'){tagA.textContent=NAMES[0];tagB.textContent=NAMES[1];swipe();
    say.textContent='Drag across: '+NAMES[0]+' left, '+NAMES[1]+' right.';}
  if(m==='flicker'){showB=false;const tick=()=>{showB=!showB;
      layerB.style.display=showB?'block':'none';tagB.textContent=showB?NAMES[1]:NAMES[0];};
    tick();timer=setInterval(tick,PERIOD);
    say.textContent=NAMES[0]+' and '+NAMES[1]+' alternate every '+PERIOD+' ms; click to pause.';}
  if(m==='side'){say.textContent=NAMES[0]+' left, '+NAMES[1]+' right (the centre; drag to pan), one zoom for both.';}
  size();home();apply();}
root.querySelectorAll('input[name='+JSON.stringify(UID+'-mode')+']').forEach(r=>
  r.addEventListener('change',e=>setMode(e.target.value)));
const mapBox=root.querySelector('.maptoggle'), op=root.querySelector('.opacity');
function mapShow(){const on=!!(mapBox&&mapBox.checked);root.classList.toggle('mapon',on);
  maps.forEach(m=>{m.style.display=on?'block':'none';m.style.opacity=op?op.value/100:0.8;});}
if(mapBox){mapBox.addEventListener('change',mapShow);op.addEventListener('input',mapShow);}
mapShow();
root.querySelector('.zin').onclick=()=>{const [vw,vh]=vwh();zoomAt(1.5,vw/2,vh/2);};
root.querySelector('.zout').onclick=()=>{const [vw,vh]=vwh();zoomAt(1/1.5,vw/2,vh/2);};
root.querySelector('.zreset').onclick=()=>{home();apply();};
views.forEach(v=>{
  v.addEventListener('wheel',e=>{if(!(e.ctrlKey||e.metaKey||e.altKey))return;e.preventDefault();
    const r=v.getBoundingClientRect();zoomAt(e.deltaY<0?1.25:0.8,e.clientX-r.left,e.clientY-r.top);},
    {passive:false});
  let drag=null;
  v.addEventListener('pointerdown',e=>{const r=v.getBoundingClientRect();
    const onHandle=mode==='swipe'&&Math.abs(e.clientX-r.left-cut*W)<14;
    drag={x:e.clientX,y:e.clientY,tx:tx,ty:ty,swipe:onHandle||(mode==='swipe'&&s===1),moved:false};
    v.setPointerCapture(e.pointerId);if(drag.swipe){cut=(e.clientX-r.left)/W;cut=Math.min(1,Math.max(0,cut));swipe();}});
  v.addEventListener('pointermove',e=>{if(!drag)return;const r=v.getBoundingClientRect();
    if(Math.abs(e.clientX-drag.x)+Math.abs(e.clientY-drag.y)>3)drag.moved=true;
    if(drag.swipe){cut=Math.min(1,Math.max(0,(e.clientX-r.left)/W));swipe();}
    else{tx=drag.tx+e.clientX-drag.x;ty=drag.ty+e.clientY-drag.y;apply();}});
  v.addEventListener('pointerup',()=>{if(drag&&!drag.moved&&mode==='flicker'){
      if(timer){clearInterval(timer);timer=null;say.textContent='Paused on '+
        (showB?NAMES[1]:NAMES[0])+'; click to go on.';}else{setMode('flicker');}}
    drag=null;});});
setMode(mode);
})();
"""


def compare_html(a: np.ndarray, b: np.ndarray, *, map_layer: np.ndarray | None = None,
                 map_label: str = "distance map", names: tuple[str, str] = ("A", "B"),
                 display_width: int = 560, opacity: float = 0.8, mode: str = "swipe",
                 show_map: bool = False, uid: str = "cmp", period_ms: int = 700,
                 jpeg: bool = False, jpeg_quality: int = 88) -> str:
    """The comparison as an HTML fragment: ``a`` and ``b`` (HxWx3 uint8, same size), and an
    optional ``map_layer`` (HxWx3 or HxWx4 uint8, any size: stretched over the images).

    ``mode`` is the starting view ("swipe", "flicker" or "side"); ``jpeg`` embeds the photos
    as JPEG (smaller, for reports) instead of lossless PNG.
    """
    a, b = as_uint8_image(a), as_uint8_image(b)
    if a.shape != b.shape:
        raise ValueError(f"compare_html needs two images of one size, got {a.shape} and "
                         f"{b.shape}.")
    if mode not in ("swipe", "flicker", "side"):
        raise ValueError(f"mode must be swipe, flicker or side, got {mode!r}.")
    uid = re.sub(r"[^A-Za-z0-9_-]", "_", uid) or "cmp"
    h, w = a.shape[:2]
    width = int(display_width)
    height = round(width * h / w)
    ua, ub = ((jpeg_data_uri(x, jpeg_quality) for x in (a, b)) if jpeg else
              (png_data_uri(x) for x in (a, b)))
    um = None
    if map_layer is not None:
        layer = np.asarray(map_layer, dtype=np.uint8)
        faded = layer.ndim == 3 and layer.shape[2] == 4 and bool((layer[..., 3] < 255).any())
        um = (jpeg_data_uri(np.ascontiguousarray(layer[..., :3]), jpeg_quality)
              if jpeg and not faded else png_data_uri(layer))
    na, nb = (html.escape(n) for n in names)

    def layer(cls: str, src: str) -> str:
        maps = f'<img class="map" alt="" src="{um}">' if um else ""
        return (f'<div class="layer {cls}"><div class="inner"><img class="photo" alt="" '
                f'src="{src}">{maps}</div></div>')

    radios = "".join(
        f'<label><input type="radio" name="{uid}-mode" value="{v}"'
        f'{" checked" if v == mode else ""}> {t}</label>'
        for v, t in (("swipe", "Swipe"), ("flicker", "Flicker"), ("side", "Side by side")))
    map_controls = (
        f'<label><input type="checkbox" class="maptoggle"{" checked" if show_map else ""}> '
        f'{html.escape(map_label)}</label><input type="range" class="opacity" min="0" '
        f'max="100" value="{round(100 * opacity)}" title="map opacity" aria-label="map opacity">'
        if um else "")
    css = (_CSS.replace("{uid}", uid).replace("{w}", str(width))
           .replace("{tb}", str(TOOLBAR_PX)).replace("{ft}", str(FOOTER_PX))
           .replace("GREY_CONTRAST", f"{GREY_CONTRAST:.3f}")
           .replace("GREY_BRIGHT", f"{GREY_BRIGHT:.3f}"))
    js = (_JS.replace("UID", json.dumps(uid)).replace("DISPLAY_W", str(width))
          .replace("DISPLAY_H", str(height)).replace("NAMES_JSON", json.dumps(list(names)))
          .replace("MODE", json.dumps(mode)).replace("PERIOD", str(int(period_ms))))
    return (
        f'<style>{css}</style><div class="cmp" id="{uid}">'
        f'<div class="bar">{radios}{map_controls}'
        f'<span><button class="zout" title="zoom out">&minus;</button> '
        f'<span class="zoom">100%</span> <button class="zin" title="zoom in">+</button> '
        f'<button class="zreset" title="fit">fit</button></span></div>'
        f'<div class="views"><div class="view v1">{layer("la", ua)}{layer("lb", ub)}'
        f'<div class="handle"></div><span class="tag ta" style="left:6px">{na}</span>'
        f'<span class="tag tb" style="right:6px">{nb}</span></div>'
        f'<div class="view v2">{layer("lb2", ub)}<span class="tag" style="right:6px">{nb}'
        f"</span></div></div>"
        f'<div class="foot"><span class="say"></span><span>zoom: &minus;/+ or Ctrl+scroll; '
        f"pan: drag</span></div></div><script>{js}</script>")
