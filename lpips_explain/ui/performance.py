"""The Performance page: speed, memory and fidelity of each mode, stored and measured live."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import streamlit as st

from lpips_explain.analyses.checks.mode_error import TARGETS, fidelity_set, measure_fidelity
from lpips_explain.core.modes import PRECISIONS, available_modes, mode_net
from lpips_explain.core.profiling import machine, profile, size_inversions
from lpips_explain.explainer import Explainer
from lpips_explain.output import performance as figures
from lpips_explain.ui.resources import ProgressBar
from lpips_explain.ui.widgets import chart

STORED = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "profile.json"
LIVE = "perf_live_profile"  # session state: the last live profile (a dict like the stored one)
RUN_BUTTON = "perf_run"
LIVE_PRECISIONS = "perf_precisions"
LIVE_SIZES = "perf_sizes"
SIZE_CHOICES = (48, 64, 96, 128, 192, 256)


def stored_profile(path: Path | None = None) -> dict | None:
    """The profile measured for the README (``lpips-explain profile --json``), if present."""
    try:
        return json.loads((path or STORED).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def load_text(m: dict) -> str:
    """The machine's load when measured, against its cores ("load average 10.6 on 2 cores:
    busy"), or that it was not recorded."""
    load, cores = m.get("load_average"), m.get("cores")
    if load is None:
        return "load not recorded"
    busy = (": busy, other work shared the cores" if cores and float(load) > float(cores)
            else "")
    return f"load average {float(load):.2g} on {cores or '?'} cores{busy}"


def source_text(data: dict, what: str) -> str:
    """Which machine, when and under what load a profile was taken."""
    m = data.get("machine", {})
    bb = data.get("backbone")
    when = f"measured {m['date']}" if m.get("date") else "date not recorded; measured"
    return (f"{what}: {when} on "
            f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, torch {m.get('torch', '?')}, "
            f"{m.get('torch_threads', '?')} threads; {load_text(m)}"
            + (f"; trunk weights {bb['weights']}" if bb else ""))


def inversions_text(inv: list[dict]) -> str:
    """The size inversions of a profile in words (core.profiling.size_inversions)."""
    return "; ".join(f"{i['net']} {i['precision']}, {i['what']}: {i['large']} px took "
                     f"{i['large_ms']:.0f} ms against {i['small_ms']:.0f} ms at {i['small']} px"
                     for i in inv)


def render_stored(data: dict, what: str, key: str) -> None:
    """The stored profile with its machine, date and load; refused (and said why) when its
    times do not grow with the image size, which no unloaded machine measures."""
    inv = size_inversions(data.get("rows", []))
    if inv:
        st.warning(f"{source_text(data, what)}. Not shown: its times do not grow with the "
                   f"image size ({inversions_text(inv)}), so they measure what else the "
                   f"machine was doing, not this code. Run a profile here below.",
                   icon=":material/warning:")
        return
    render_profile(data, what, key)


def render_profile(data: dict, what: str, key: str) -> None:
    """Plots and tables of one profile (stored or live); approximate modes say so."""
    rows, fid = data.get("rows", []), data.get("fidelity", [])
    source = source_text(data, what)
    st.caption(source + ". Dashed lines are approximate modes.")
    inv = size_inversions(rows)
    if inv:  # a live profile is shown (it was asked for), with the doubt beside it
        st.warning(f"These times do not grow with the image size ({inversions_text(inv)}): "
                   f"the machine was busy; run it again when it is quieter.",
                   icon=":material/warning:")
    col_l, col_m = st.columns(2)
    # chart(): automatic margins, so no tick label or legend entry is cut off.
    chart(figures.latency_figure(rows, what), f"{key}_latency", container=col_l)
    chart(figures.memory_figure(rows, what), f"{key}_memory", container=col_m)
    table = pd.DataFrame([{
        "trunk": r["net"], "mode": f"{r['precision']} ({'exact' if r['exact'] else 'approximate'})",
        "device": r["device"], "size (px)": r["size"], "pair (ms)": round(r["latency_ms"], 2),
        "images/s": round(r["throughput"], 1), "peak MB": round(r["peak_mb"], 1),
        "build (s)": round(r["build_s"], 1)} for r in rows])
    st.dataframe(table, hide_index=True, key=f"{key}_table")
    if fid:
        chart(figures.fidelity_figure(fid, what), f"{key}_fidelity")
        st.dataframe(pd.DataFrame([{
            "trunk": f["net"], "mode": f"{f['mode']['precision']} (approximate)",
            "pairs": f["pairs"], "triplets": f["triplets"], "size (px)": f["size"],
            "Spearman": round(f["spearman"], 5), "2AFC agreement": round(f["agreement_2afc"], 4),
            "mean |error|": f"{f['mean_abs_error']:.2e}", "max |error|": f"{f['max_abs_error']:.2e}",
            "targets": ", ".join(f"{k}: {'met' if v else 'missed'}"
                                 for k, v in f.get("checks", {}).items()) or "-",
        } for f in fid]), hide_index=True, key=f"{key}_fidelity_table")


def modes_panel(explainer: Explainer) -> None:
    """Which modes this machine can run, and the one in use."""
    st.subheader("Modes on this machine")
    avail = available_modes("cpu")
    st.dataframe(pd.DataFrame([{
        "precision": p, "what it is": PRECISIONS[p],
        "here": "available" if not avail[p] else f"unavailable: {avail[p]}",
        "targets": ", ".join(f"{k} >= {v}" for k, v in TARGETS.get(p, {}).items()) or "exact",
    } for p in PRECISIONS]), hide_index=True, key="perf_modes")
    st.caption(f"In use in the sidebar: {explainer.mode.label}. Gradients (attribution) always "
               "run in exact fp32.")


def live_profile(explainer: Explainer) -> dict | None:
    """A short profile of the sidebar's trunk on this server, run on a button press."""
    st.subheader("Run a short profile here")
    avail = [p for p, why in available_modes("cpu").items() if not why]
    default = ["fp32"] + ([explainer.mode.precision] if not explainer.mode.exact else
                          [p for p in ("bf16",) if p in avail])
    col_p, col_s = st.columns(2)
    precisions = col_p.multiselect("Modes", avail, default=[p for p in default if p in avail],
                                   key=LIVE_PRECISIONS,
                                   help="int8 calibrates and compiles once per server "
                                        "process (tens of seconds) before it is timed.")
    sizes = col_s.multiselect("Image sides (px)", SIZE_CHOICES, default=[64, 128],
                              key=LIVE_SIZES)
    if st.button("Run the profile", key=RUN_BUTTON, type="primary",
                 disabled=not precisions or not sizes):
        bar = ProgressBar("Profiling")
        try:
            rows = profile([explainer.model], sorted(sizes), precisions, batch=8, repeats=3,
                           progress=bar)
            fid = []
            approx = [p for p in precisions if p != "fp32"]
            if approx:
                fset = fidelity_set(64)
                for p in approx:
                    net, mode = mode_net(explainer.model, p, "cpu")
                    f = measure_fidelity(explainer.model, net, mode, fset=fset, progress=bar)
                    fid.append({"net": explainer.net, **f.to_dict(), "checks": f.checks()})
        finally:
            bar.clear()
        st.session_state[LIVE] = {"machine": machine(),
                                  "backbone": explainer.weights_info.to_dict(),
                                  "rows": [r.to_dict() for r in rows], "fidelity": fid}
    return st.session_state.get(LIVE)
