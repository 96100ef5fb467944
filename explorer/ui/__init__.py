"""Streamlit widgets and panels: the only part of the package that imports streamlit."""
