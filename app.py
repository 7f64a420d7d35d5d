"""lpips-explain's Streamlit app: the list of its pages, Explain first (the default).

streamlit run app.py
"""

import streamlit as st

from lpips_explain.ui import upload_fix

upload_fix.install()  # a file dropped as a run starts is not lost (see the module)

st.navigation([
    st.Page("pages/0_Explain.py", title="Explain", icon=":material/search:", default=True),
    st.Page("pages/1_Triplet.py", title="Triplet", icon=":material/balance:"),
    st.Page("pages/2_Sensitivity.py", title="Sensitivity", icon=":material/show_chart:"),
    st.Page("pages/3_Diagnostics.py", title="Diagnostics", icon=":material/health_and_safety:"),
    st.Page("pages/4_Performance.py", title="Performance", icon=":material/speed:"),
    st.Page("pages/5_Calibrate.py", title="Calibrate", icon=":material/tune:"),
    st.Page("pages/6_Audit.py", title="Audit", icon=":material/fact_check:"),
]).run()
