-- prompts: one row per unique prompt, every column except embedding vectors
-- (query vectors with lance_vector_search, or from Python with Lake.to_polars(vectors=True)).
-- It reads prompts_raw, or in Python the analysis cache: a Parquet copy of these columns at the
-- same table version (see docs/sql.md).
CREATE OR REPLACE VIEW prompts AS
SELECT {{prompts_columns}} FROM {{prompts_source}};
