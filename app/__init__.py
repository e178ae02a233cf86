"""Cluster Studio: the Streamlit app over the ``clustering`` package's run directories."""
