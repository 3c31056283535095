-- prompt_lengths / prompt_length_hist: words and characters per prompt (cleaned text) and their histogram (words in 5s, chars in 50s, last bin open).
CREATE OR REPLACE TEMP VIEW prompt_lengths AS
SELECT
    uuid,
    source,
    length(coalesce(prompt_clean, prompt)) AS chars,
    CASE WHEN trim(coalesce(prompt_clean, prompt)) = '' THEN 0
         ELSE len(regexp_split_to_array(trim(coalesce(prompt_clean, prompt)), '\s+')) END AS words
FROM prompts;

CREATE OR REPLACE TEMP VIEW prompt_length_hist AS
WITH binned AS (
    SELECT 'words' AS unit, least(words // 5, 20) * 5 AS bin_lo FROM prompt_lengths
    UNION ALL
    SELECT 'chars' AS unit, least(chars // 50, 20) * 50 AS bin_lo FROM prompt_lengths
)
SELECT
    unit,
    bin_lo,
    CASE WHEN (unit = 'words' AND bin_lo = 100) OR (unit = 'chars' AND bin_lo = 1000) THEN NULL
         WHEN unit = 'words' THEN bin_lo + 5 ELSE bin_lo + 50 END AS bin_hi,
    count(*) AS prompts,
    count(*) / sum(count(*)) OVER (PARTITION BY unit) AS share
FROM binned
GROUP BY unit, bin_lo
ORDER BY unit DESC, bin_lo;
