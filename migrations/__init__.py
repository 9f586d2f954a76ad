"""Alembic migrations (a package so that installed copies of Thankly can find them)."""
