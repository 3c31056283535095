"""Similarity search over a vector column: neighbours of one prompt, with and without a filter.

    python examples/similarity_search.py [--lake LAKE]
"""

from __future__ import annotations

from _common import lake_from_args

from vidprom_lake.index import similar
from vidprom_lake.schema import is_vector_field

lake, _ = lake_from_args(__doc__)
columns = [f.name for f in lake.dataset("prompts").schema if is_vector_field(f)]
if not columns:
    raise SystemExit("this lake has no vector column yet: run `vidlake embed` first")
column = "embedding" if "embedding" in columns else columns[0]
qname = "`" + column + "`"
probe = lake.dataset("prompts").to_table(columns=["uuid", "prompt"], filter=f"{qname} IS NOT NULL",
                                          limit=1).to_pylist()[0]
print(f"column {column}; query: {probe['prompt'][:80]!r}")
hits = similar(lake, uuid=probe["uuid"], k=5, column=column)
for r in hits.to_pylist():
    print(f"  {r['rank']}. {r['similarity']:.3f}  {r['prompt'][:80]}")
hits = similar(lake, uuid=probe["uuid"], k=3, column=column, where="source = 'vidprom'")
print(f"only VidProM prompts: {hits.num_rows} hits")
# the same search from SQL, through DuckDB's lance extension (lance_vector_search)
vec = lake.dataset("prompts").to_table(columns=[column], filter=f"uuid = '{probe['uuid']}'")
q = vec.column(0)[0].as_py()
dim = len(q)
sql = (f"SELECT uuid, left(prompt, 60) AS prompt, _distance "
       f"FROM lance_vector_search('{lake.table_uri('prompts')}', '{column}', "
       f"{[round(float(v), 6) for v in q]}::FLOAT[{dim}], k = 3) ORDER BY _distance")
print("from SQL:")
for r in lake.query(sql).to_pylist():
    print(f"  {r['_distance']:.3f}  {r['prompt']}")
