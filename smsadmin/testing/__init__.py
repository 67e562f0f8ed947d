"""Test harnesses shared by every app's tests (pytest plugins, loaded from the root conftest)."""
