"""Compressed data blocks -> flat (start, end, value) record arrays."""
