-- prompts: one row per unique prompt, every column except embedding vectors
-- (query vectors with lance_vector_search, or from Python with Lake.to_polars(vectors=True)).
CREATE OR REPLACE VIEW prompts AS
SELECT {{prompts_columns}} FROM prompts_raw;
