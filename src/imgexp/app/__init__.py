"""The web app (imgexp-app): recognise, compare and browse images with a trained checkpoint.

The Streamlit page script (`streamlit_app.py`) only lays out widgets; what it shows is computed
by the plain modules next to it (uploads, recognise, compare, gallery), which tests call
without Streamlit.
"""
