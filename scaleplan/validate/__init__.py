"""Proof of transfer: sweep small widths, fit lr*(width), train a wide target, measure regret."""
