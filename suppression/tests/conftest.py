# The send engine's fake Twilio, for tests that run blasts end to end.
from messaging.tests.conftest import fake_twilio  # noqa: F401
