"""The lake's SQL views from the stock DuckDB shell (`duckdb -init <(vidlake sql-init)`).

Writes the init script `vidlake sql-init` prints and runs a few analysis views through the
`duckdb` command-line shell (pip install duckdb-cli==1.5.5), or, when that is not installed,
through the duckdb Python module with the very same script.

    python examples/duckdb_shell.py [--lake LAKE]
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
from pathlib import Path

from _common import lake_from_args

from vidprom_lake.sql import init_script

lake, _ = lake_from_args(__doc__)
tmp = tempfile.mkdtemp(prefix="vidlake-sql-")
atexit.register(shutil.rmtree, tmp, True)  # examples leave nothing behind
init = Path(tmp) / "init.sql"
init.write_text(init_script(lake))  # the same text as `vidlake --lake LAKE sql-init`

QUERIES = [
    "SELECT * FROM prompt_length_hist WHERE unit = 'words' LIMIT 6",
    "SELECT word, occurrences FROM top_words LIMIT 10",
    "SELECT bigram, occurrences FROM top_bigrams LIMIT 5",
    "SELECT * FROM prompts_per_week ORDER BY week DESC LIMIT 5",
    "SELECT category, scored, share_above_0_5 FROM nsfw_shares",
    "SELECT * FROM prompt_video_counts",
]

shell = shutil.which("duckdb")
if shell:
    print(f"running the DuckDB shell: {shell} -init {init}")
    out = subprocess.run([shell, "-init", str(init), "-batch", "-c", ";\n".join(QUERIES) + ";"],
                         capture_output=True, text=True, check=True)
    print(out.stdout)
else:
    import duckdb

    print("no duckdb shell on PATH; running the same init script through the Python module")
    con = duckdb.connect()
    con.execute(init.read_text())
    for q in QUERIES:
        print(q)
        print(con.sql(q))
