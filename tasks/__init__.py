"""Thin Celery tasks: they take ids, call a plain function in `worker`, and nothing more."""
