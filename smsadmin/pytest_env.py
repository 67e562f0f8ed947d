"""Loaded by pytest (-p in pytest.ini) before Django's settings are read."""

import os

# The suite never reads a developer's .env: what it tests must not depend on it.
os.environ["SMSADMIN_ENV_FILE"] = ""
# The suite runs without any .env: a throwaway key, and never a real SMS backend.
os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ["SMS_BACKEND"] = os.environ.get("TEST_SMS_BACKEND", "console")
# Tasks enqueued by code under test go to an in-memory broker nobody consumes; tests
# run the services themselves, or start real workers with their own environment.
os.environ.setdefault("CELERY_BROKER_URL", "memory://")
# Quiet hours would make tests depend on the time of day they run at; the tests of
# quiet hours set them themselves.
os.environ["QUIET_HOURS"] = ""
# The test client and the programs the e2e tests start talk plain http, as `make run`
# does: no redirect to https. The production settings' own test sets it back.
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
# Admins without an authenticator app would be sent to enrol from every page; the
# two-factor tests turn it on themselves.
os.environ.setdefault("REQUIRE_2FA_FOR_ADMINS", "false")
