"""Architecture Explorer: `streamlit run streamlit_app.py`. Composition only: pages live in explorer/ui/pages,
panels in explorer.ui. Each rerun executes the shared sidebar and the one page in view."""

import streamlit as st

from explorer.ui import navigation, sidebar

st.set_page_config(page_title="Architecture Explorer", page_icon=":material/memory:", layout="wide")

link_message = navigation.apply_link()
navigation.keep_settings()
sidebar.render()
page = st.navigation(navigation.pages(), position="top")
st.markdown("#### :material/memory: Architecture Explorer · small CNNs under a parameter budget")
if link_message:
    st.warning(link_message)
page.run()
navigation.sync_link()
