"""Streamlit glue shared by the pages: sidebar, run selection, cached loaders, image grids."""
