"""The Architecture page: cost of the network the sidebar describes."""

from explorer.ui import arch_panel, sidebar

arch_panel.render(sidebar.selection())
