"""The Inside a net page: a trained net's predictions, feature maps, filters and Grad-CAM on an image."""

from explorer.ui import inspect_panel

inspect_panel.render()
