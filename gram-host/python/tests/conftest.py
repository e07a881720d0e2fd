"""Shared fixtures: the repository's reference cases and the `gram` CLI to compare against."""
import json
import os
import pathlib
import shutil

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
REFERENCE = REPO / "testdata" / "reference"


def reference_cases():
    """(name, anchor, [modalities], exact) for every case in testdata/reference."""
    index = json.loads((REFERENCE / "index.json").read_text())
    for name, m in sorted(index.items()):
        anchor = np.load(REFERENCE / f"{name}_anchor.npy")
        mods = [np.load(REFERENCE / f"{name}_mod{t}.npy") for t in range(m)]
        exact = np.load(REFERENCE / f"{name}_exact.npy")
        yield name, anchor, mods, exact


@pytest.fixture(scope="session")
def gram_cli():
    """Path of the `gram` binary: $GRAM_BIN, else target/{release,debug}/gram of this clone.

    Without one the CLI-parity tests skip with that reason, unless GRAM_REQUIRE_CLI=1 (CI).
    """
    candidates = [os.environ.get("GRAM_BIN"), REPO / "target/release/gram", REPO / "target/debug/gram"]
    for c in candidates:
        if c and pathlib.Path(c).is_file():
            return str(c)
    if shutil.which("gram"):
        return shutil.which("gram")
    if os.environ.get("GRAM_REQUIRE_CLI") == "1":
        pytest.fail("GRAM_REQUIRE_CLI=1 but no gram binary ($GRAM_BIN or target/*/gram)")
    pytest.skip("no gram binary: set GRAM_BIN or run `cargo build -p gram-host` first")
