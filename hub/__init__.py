"""Hub: one clean customer base fed from the CRMs and spreadsheets a business already uses."""

__version__ = "0.1.0"
