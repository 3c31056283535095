-- semantic_unique_share: per source and overall, prompts checked by dedup, kept as semantically unique, and their share.
CREATE OR REPLACE TEMP VIEW semantic_unique_share AS
SELECT
    coalesce(source, '(all)') AS source,
    count(*) AS prompts,
    count(unique_semantic) AS checked,
    count(*) FILTER (WHERE unique_semantic) AS unique_prompts,
    count(*) FILTER (WHERE NOT unique_semantic) AS duplicates,
    CASE WHEN count(unique_semantic) = 0 THEN NULL
         ELSE count(*) FILTER (WHERE unique_semantic) / count(unique_semantic) END AS unique_share
FROM prompts
GROUP BY ROLLUP (source)
ORDER BY source = '(all)', source;
