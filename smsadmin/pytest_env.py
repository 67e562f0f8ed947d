"""Loaded by pytest (-p in pytest.ini) before Django's settings are read."""

import os

# The suite runs without any .env: a throwaway key, and never a real SMS backend.
os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ["SMS_BACKEND"] = os.environ.get("TEST_SMS_BACKEND", "console")
