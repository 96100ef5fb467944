"""The Train tab (placeholder until the training engine lands)."""

from __future__ import annotations

import streamlit as st

from explorer.ui.state import Selection


def render(selection: Selection) -> None:
    st.info("Training: coming soon.")
