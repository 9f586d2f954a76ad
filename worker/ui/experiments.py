"""The dashboard's experiments page (being built)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
