"""The Search page: architecture search with a live Pareto front."""

from explorer.ui import search_panel, sidebar

search_panel.render(sidebar.selection())
