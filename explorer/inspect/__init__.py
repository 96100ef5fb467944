"""Looking inside: the data and its augmentation (data.py), a trained net's activations, filters and Grad-CAM
(net.py), images from users (images.py), export to ONNX/TorchScript with a model card (export.py). Beside
explorer.search, above the store; never imports streamlit."""
