-- source_summary / vidprom_vs_diffusiondb: one row of metrics per source, and VidProM beside DiffusionDB metric by metric (empty unless both are in the lake).
CREATE OR REPLACE TEMP VIEW source_summary AS
SELECT
    l.source,
    count(*) AS prompts,
    avg(l.words) AS avg_words,
    median(l.words) AS median_words,
    avg(l.chars) AS avg_chars,
    median(l.chars) AS median_chars,
    quantile_cont(l.chars, 0.9) AS p90_chars,
    count(DISTINCT lower(trim(coalesce(p.prompt_clean, p.prompt)))) AS distinct_texts,
    avg((p.flags IS NOT NULL)::INTEGER) AS share_with_flags,
    avg((p.toxicity > 0.5)::INTEGER) AS share_toxic_0_5,
    min(p.time) AS first_time,
    max(p.time) AS last_time,
    count(DISTINCT (p.time AT TIME ZONE 'UTC')::DATE) AS active_days
FROM prompt_lengths AS l JOIN prompts AS p USING (uuid)
GROUP BY l.source
ORDER BY prompts DESC;

CREATE OR REPLACE TEMP VIEW vidprom_vs_diffusiondb AS
WITH s AS (
    SELECT * FROM source_summary WHERE source IN ('vidprom', 'diffusiondb')
), both_present AS (
    SELECT count(*) = 2 AS ok FROM s
), shared AS (
    -- the same cleaned prompt text in both sources
    SELECT count(*) AS n FROM (
        SELECT lower(trim(coalesce(prompt_clean, prompt))) AS t FROM prompts WHERE source = 'vidprom'
        INTERSECT
        SELECT lower(trim(coalesce(prompt_clean, prompt))) AS t FROM prompts WHERE source = 'diffusiondb'
    )
), metrics AS (
    SELECT 1 AS ord, 'prompts' AS metric, source, prompts::DOUBLE AS value FROM s
    UNION ALL SELECT 2, 'avg_words', source, avg_words FROM s
    UNION ALL SELECT 3, 'median_words', source, median_words::DOUBLE FROM s
    UNION ALL SELECT 4, 'avg_chars', source, avg_chars FROM s
    UNION ALL SELECT 5, 'median_chars', source, median_chars::DOUBLE FROM s
    UNION ALL SELECT 6, 'p90_chars', source, p90_chars FROM s
    UNION ALL SELECT 7, 'distinct_texts', source, distinct_texts::DOUBLE FROM s
    UNION ALL SELECT 8, 'share_with_flags', source, share_with_flags FROM s
    UNION ALL SELECT 9, 'share_toxic_0_5', source, share_toxic_0_5 FROM s
    UNION ALL SELECT 10, 'active_days', source, active_days::DOUBLE FROM s
    UNION ALL SELECT 11, 'shared_texts', source, (SELECT n FROM shared)::DOUBLE FROM s
)
SELECT
    metric,
    max(value) FILTER (WHERE source = 'vidprom') AS vidprom,
    max(value) FILTER (WHERE source = 'diffusiondb') AS diffusiondb
FROM metrics
WHERE (SELECT ok FROM both_present)
GROUP BY metric, ord
ORDER BY ord;
