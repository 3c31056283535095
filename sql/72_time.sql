-- prompts_per_day / prompts_per_week: prompts by UTC day and by ISO week (weeks start on Monday), per source.
CREATE OR REPLACE TEMP VIEW prompts_per_day AS
SELECT (time AT TIME ZONE 'UTC')::DATE AS day, source, count(*) AS prompts
FROM prompts
WHERE time IS NOT NULL
GROUP BY ALL
ORDER BY day, source;

CREATE OR REPLACE TEMP VIEW prompts_per_week AS
SELECT date_trunc('week', (time AT TIME ZONE 'UTC')::DATE)::DATE AS week, source, count(*) AS prompts
FROM prompts
WHERE time IS NOT NULL
GROUP BY ALL
ORDER BY week, source;
