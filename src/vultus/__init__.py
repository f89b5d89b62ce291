"""Vultus: a self-hosted face search engine built for data protection by design."""

__version__ = "0.1.0"
