"""The app the browser tests serve with uvicorn (``--factory``): the normal service over the
test's data directory, except that applications are evaluated from the score history (the
test stores evaluations there instead of training a credit model)."""

from __future__ import annotations

from fastapi import FastAPI

from flowbureau.config import get_settings
from flowbureau.service.app import create_app
from flowbureau.service.context import build_context


def create() -> FastAPI:
    """Build the app from the environment (FLOWBUREAU_DATA_DIR etc.)."""
    settings = get_settings()
    context = build_context(settings)
    context.evaluator_factory = None  # evaluate with the provider: the stored evaluations
    return create_app(settings, context=context)
