"""The Streamlit shell's helpers: the only part of lpips_explain that imports streamlit.

app.py lists the pages (st.navigation; Explain, pages/0_Explain.py, is the default). Each
page reads as a recipe: ``controls.page_setup`` (shared sidebar, cached Explainer, weights
panel and random-trunk banner) -> an input helper from ``inputs`` -> one core call through
``resources.cached`` (a bounded store, progress fed by the engine), tracked by ``runstate``
(which part is computing, which are done) -> the page's own module, one per page:
``explain``, ``triplet``, ``sensitivity``, ``diagnostics``, ``performance``, ``calibrate``
and ``audit``, drawn with the shared ``widgets`` (charts, captions, pickers, notices, the
glossary). ``keys`` names every session-state entry and widget key; ``state`` carries
widget values across pages; ``links`` puts the view in the URL's query parameters;
``feedback`` turns errors into st.error messages instead of tracebacks.
"""
