"""symelig's version, in a module of its own: the emitters write it into what they generate
without importing the package face (symelig/__init__.py), and pyproject.toml reads it from here."""
__version__ = "0.1.0"
