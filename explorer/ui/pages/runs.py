"""The Runs page: every run kept, compared, renamed, deleted."""

from explorer.ui import runs_panel

runs_panel.render()
