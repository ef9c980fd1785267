"""The version of tabrl: one definition, read by the package, its metadata and run folders."""

__version__ = "0.1.0"
