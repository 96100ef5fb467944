"""The Data page: class counts, sample images, normalization and the augmentation preview."""

from explorer.ui import data_panel, sidebar

data_panel.render(sidebar.selection())
