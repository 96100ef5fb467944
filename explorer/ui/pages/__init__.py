"""Page scripts run by st.navigation (streamlit_app.py), one per page; each is a few lines that call a panel.

They are scripts, not modules to import: importing one would draw its page.
"""
