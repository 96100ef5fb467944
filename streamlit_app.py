"""Architecture Explorer: `streamlit run streamlit_app.py`. Page layout only; the panels live in explorer.ui."""

import streamlit as st

from explorer.ui import arch_panel, checkpoints_panel, runs_panel, sidebar, train_panel

st.set_page_config(page_title="Architecture Explorer", page_icon=":material/memory:", layout="wide")

selection = sidebar.render()
st.markdown("#### :material/memory: Architecture Explorer · small CNNs under a parameter budget")
architecture, train, checkpoints, runs = st.tabs(["Architecture", "Train", "Checkpoints", "Runs"])
with architecture:
    arch_panel.render(selection)
with train:
    train_panel.render(selection)
with checkpoints:
    checkpoints_panel.render()
with runs:
    runs_panel.render()
