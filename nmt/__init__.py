"""nmt: sequence-to-sequence neural machine translation."""

__version__ = "0.1.0"
