import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from harness import PROSODY_VERSIONS, Prosody  # noqa: E402

_counter = [0]


def pytest_generate_tests(metafunc):
    # Every test runs against each Prosody version (PROSODY_VERSIONS="0.12"
    # or "13" narrows it down for a quick local run).
    if "version" in metafunc.fixturenames:
        wanted = os.environ.get("PROSODY_VERSIONS", " ".join(PROSODY_VERSIONS)).split()
        # (none would select no test and pass: refused)
        if not wanted or not set(wanted) <= set(PROSODY_VERSIONS):
            raise pytest.UsageError(f"PROSODY_VERSIONS={os.environ.get('PROSODY_VERSIONS')!r}: "
                                    f"name one or more of {' '.join(PROSODY_VERSIONS)}")
        metafunc.parametrize("version", wanted, scope="session")


@pytest.fixture(scope="session")
def prosody(version):
    """A Prosody with the module and default options, shared by the tests.

    Without retries: a push one test leaves failing (its app server gone)
    would otherwise be retried into a later test's app server. Retries are
    tested on dedicated servers (test_lasting.py)."""
    p = Prosody(version=version, options={"push_retry_delays": []})
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
def prosody_with(version):
    """Starts a dedicated Prosody with extra options; stopped after the test."""
    started = []

    def start(**kwargs):
        kwargs.setdefault("version", version)
        p = Prosody(**kwargs)
        started.append(p)
        return p.start()

    yield start
    for p in started:
        p.cleanup()


@pytest.fixture
def browsers(tmp_path):
    """Starts headless Chromium browsers (web.Browser) inside a scenario:
    `await browsers().start()`. Every one is killed after the test, even
    when it failed; its page log is printed for a failed test."""
    from web import Browser

    started = []

    def make():
        b = Browser(workdir=tmp_path)
        started.append(b)
        return b

    yield make
    for b in started:
        if b.log:
            print(f"--- page log of {b.dir}:\n" + b.logs())
        b.cleanup()


@pytest.fixture(scope="session")
def postgres_server():
    """A private PostgreSQL server on loopback (Debian's package), started
    for the test run and stopped afterwards (harness.Postgres)."""
    from harness import Postgres

    server = Postgres()
    yield server
    server.stop()


@pytest.fixture
def postgres(postgres_server):
    """A function that creates a fresh database on the private PostgreSQL
    server and returns Prosody's `sql` option for it."""
    return postgres_server.database
