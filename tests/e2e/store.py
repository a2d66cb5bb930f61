"""Reads what Prosody's internal storage holds, through Prosody's own
util.json under Lua 5.4, so the test sees exactly what the module wrote."""

import json
import subprocess
from pathlib import Path

READER = Path(__file__).with_name("read_store.lua")


def read_store(path):
    """The Lua table in a datamanager .dat file, as Python data; None if absent."""
    if not path.exists():
        return None
    out = subprocess.run(["lua5.4", str(READER), str(path)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)
