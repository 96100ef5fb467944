"""The Checkpoints page: load, evaluate and resume saved networks."""

from explorer.ui import checkpoints_panel

checkpoints_panel.render()
