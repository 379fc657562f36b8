"""The torch-free core: parametrization rules as data and the typed reference a sweep, a law file and a
model are checked against. Nothing here imports torch, scipy or pandas (tests/core/test_imports.py)."""
