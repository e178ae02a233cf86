"""Plain, Streamlit-free functions behind the studio's views (unit-tested in tests/test_app_logic.py)."""
