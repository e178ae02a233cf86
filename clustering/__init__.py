"""Cluster Studio's library: deep contrastive image clustering (UCCC, CC, SACC, GCC, LNSCC)."""

__version__ = "0.1.0"
