-- batches: the batch log, one row per batch with its latest status, counts and table versions.
CREATE OR REPLACE VIEW batches AS
WITH ordered AS (
    SELECT *,
        row_number() OVER (PARTITION BY batch_id ORDER BY seq DESC) AS rn,
        first(kind) OVER (PARTITION BY batch_id ORDER BY seq) AS first_kind,
        first(source) OVER (PARTITION BY batch_id ORDER BY seq) AS first_source,
        first(params) OVER (PARTITION BY batch_id ORDER BY seq) AS first_params,
        first(started_at) OVER (PARTITION BY batch_id ORDER BY seq) AS first_started
    FROM batches_raw
)
SELECT
    batch_id,
    first_kind AS kind,
    status,
    first_source AS source,
    coalesce(TRY_CAST(json_extract(counts, '$.rows_added') AS BIGINT), 0) AS rows_added,
    coalesce(TRY_CAST(json_extract(counts, '$.rows_updated') AS BIGINT), 0) AS rows_updated,
    first_params AS params,
    counts,
    versions,
    first_started AS started_at,
    time,
    message
FROM ordered
WHERE rn = 1
ORDER BY batch_id;
