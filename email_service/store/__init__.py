"""Storage: the only package that imports sqlalchemy (shell)."""
