"""Security tests: real daemons in temp homes (helpers and the `home` fixture, which kills
whatever a failed test left behind, come from tests/integration/conftest.py)."""
from tests.integration.conftest import home  # noqa: F401  (the fixture, re-exported)
