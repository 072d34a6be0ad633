"""Exporters: one module per format plus a registry (see registry.py)."""

from workbench.export.registry import Exporter, export_formats, get_exporter

__all__ = ["Exporter", "export_formats", "get_exporter"]
