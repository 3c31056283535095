-- source_comparison: per source (VidProM prompts vs OpenVid/VidGen/MiraData captions): count, length in chars and words (p10/median/p90), vocabulary, top words.
-- Text is prompt_clean (Pika flags and HTML cut); words are lower-case [a-z0-9'] runs; top words
-- leave out a short English stop-word list. The share of prompts whose nearest neighbour in
-- another source is above the dedup threshold needs vectors: `vidlake compare-sources` or
-- vidprom_lake.ingest.seed_datasets.compare_sources() add it.
CREATE OR REPLACE VIEW source_comparison AS
WITH p AS (
    SELECT coalesce(source, '(none)') AS source,
           coalesce(prompt_clean, prompt) AS text,
           regexp_extract_all(lower(coalesce(prompt_clean, prompt)), '[a-z0-9]+(?:''[a-z0-9]+)*') AS toks
    FROM prompts
),
lens AS (
    SELECT source, count(*) AS prompts,
           quantile_disc(length(text), 0.1) AS chars_p10,
           quantile_disc(length(text), 0.5) AS chars_median,
           quantile_disc(length(text), 0.9) AS chars_p90,
           round(avg(length(text)), 1) AS chars_mean,
           quantile_disc(len(toks), 0.1) AS words_p10,
           quantile_disc(len(toks), 0.5) AS words_median,
           quantile_disc(len(toks), 0.9) AS words_p90,
           round(avg(len(toks)), 1) AS words_mean,
           sum(len(toks))::BIGINT AS tokens
    FROM p GROUP BY source
),
words AS (
    SELECT source, unnest(toks) AS word FROM p
),
vocab AS (
    SELECT source, count(DISTINCT word) AS vocabulary FROM words GROUP BY source
),
freq AS (
    SELECT source, word, count(*) AS n
    FROM words
    WHERE length(word) > 1 AND word NOT IN (
        'the', 'and', 'of', 'in', 'on', 'with', 'to', 'is', 'it', 'its', 'at', 'by', 'for',
        'from', 'an', 'as', 'are', 'be', 'this', 'that', 'which', 'while', 'there', 'their',
        'they', 'into', 'or', 'was', 'has', 'have', 'his', 'her', 'he', 'she', 'can', 'also',
        'some', 'other', 'appears', 'video', 'scene', 'seems')
    GROUP BY source, word
),
top AS (
    SELECT source, list(word ORDER BY n DESC, word) AS top_words
    FROM (SELECT * FROM freq QUALIFY row_number() OVER (PARTITION BY source ORDER BY n DESC, word) <= 10)
    GROUP BY source
)
SELECT l.source, l.prompts, l.chars_p10, l.chars_median, l.chars_p90, l.chars_mean,
       l.words_p10, l.words_median, l.words_p90, l.words_mean, l.tokens,
       v.vocabulary, t.top_words
FROM lens l
LEFT JOIN vocab v USING (source)
LEFT JOIN top t USING (source)
ORDER BY l.source;
