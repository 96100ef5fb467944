"""Architecture Explorer: `streamlit run streamlit_app.py`. Page layout only; the panels live in explorer.ui."""

import streamlit as st

from explorer.ui import arch_panel, sidebar, train_panel

st.set_page_config(page_title="Architecture Explorer", page_icon="🧮", layout="wide")

selection = sidebar.render()
architecture, train, checkpoints, runs = st.tabs(["Architecture", "Train", "Checkpoints", "Runs"])
with architecture:
    arch_panel.render(selection)
with train:
    train_panel.render(selection)
with checkpoints:
    try:
        from explorer.ui import checkpoints_panel
    except ImportError:
        st.info("Checkpoints: coming soon.")
    else:
        checkpoints_panel.render()
with runs:
    try:
        from explorer.ui import runs_panel
    except ImportError:
        st.info("Run history: coming soon.")
    else:
        runs_panel.render()
