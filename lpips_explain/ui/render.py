"""Moved: the Explain page's renderers are in ui/explain.py, the Triplet page's in
ui/triplet.py and the shared helpers in ui/widgets.py. This module only keeps old imports
working (ui/diagnostics.py imports ``plain`` from here) until they are updated."""

from lpips_explain.ui.widgets import chart, pick, plain

__all__ = ["chart", "pick", "plain"]
