import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from harness import Prosody  # noqa: E402

_counter = [0]


@pytest.fixture(scope="session")
def prosody():
    """A Prosody 0.12 with the module and default options, shared by the tests."""
    p = Prosody()
    p.start()
    yield p
    p.cleanup()


@pytest.fixture
def users(prosody):
    """Fresh account names for each test: users("romeo", "juliet") -> JIDs."""
    return make_users(prosody)


def make_users(prosody, host="localhost"):
    def make(*names):
        _counter[0] += 1
        jids = [prosody.add_user(f"{n}{_counter[0]}", host) for n in names]
        return jids[0] if len(jids) == 1 else jids
    return make


@pytest.fixture
def prosody_with():
    """Starts a dedicated Prosody with extra options; stopped after the test."""
    started = []

    def start(**kwargs):
        p = Prosody(**kwargs)
        started.append(p)
        return p.start()

    yield start
    for p in started:
        p.cleanup()
