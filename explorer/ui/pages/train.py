"""The Train page: data, training settings, the run in progress."""

from explorer.ui import sidebar, train_panel

train_panel.render(sidebar.selection())
