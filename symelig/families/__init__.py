"""Built-in families, one module each; every module here is imported by ``symelig.catalog()``."""
