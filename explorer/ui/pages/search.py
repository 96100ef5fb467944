"""The Search page: architecture search with a live Pareto front, or a sweep (a grid of settings x seeds)."""

import streamlit as st

from explorer.ui import search_panel, sidebar, sweep_panel

mode = st.segmented_control("Mode", ("Search", "Sweep"), default="Search", key="search.mode",
                            help="Search: Optuna samples networks under the budget. Sweep: every value of one or "
                                 "two settings, each trained with several seeds; or replay the study.")
(sweep_panel if mode == "Sweep" else search_panel).render(sidebar.selection())
