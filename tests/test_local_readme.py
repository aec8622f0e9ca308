"""local/README.md names every module of local/ once, in its stage table."""

import re
from pathlib import Path

LOCAL = Path(__file__).resolve().parents[1] / "local"


def test_every_module_is_in_the_stage_table_once():
    table = [line for line in (LOCAL / "README.md").read_text().splitlines() if line.startswith("|")][2:]
    named = re.findall(r"`([a-z_0-9]+)/?`", " ".join(cell for line in table for cell in line.split("|")[2:]))
    modules = {p.stem for p in LOCAL.glob("*.py") if p.stem != "__init__"} | {"upstream_glue"}
    assert sorted(n for n in named if named.count(n) > 1) == []
    assert set(named) == modules
