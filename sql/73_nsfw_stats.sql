-- nsfw_hist / nsfw_shares: NSFW score histogram per category (20 bins of 0.05) and the share of scored prompts above 0.2, 0.5 and 0.8.
CREATE OR REPLACE TEMP VIEW nsfw_hist AS
SELECT
    category,
    least(floor(score * 20), 19)::INTEGER / 20.0 AS bin_lo,
    least(floor(score * 20), 19)::INTEGER / 20.0 + 0.05 AS bin_hi,
    count(*) AS prompts
FROM nsfw
GROUP BY ALL
ORDER BY category, bin_lo;

CREATE OR REPLACE TEMP VIEW nsfw_shares AS
SELECT
    category,
    count(*) AS scored,
    count(*) FILTER (WHERE score > 0.2) AS above_0_2,
    count(*) FILTER (WHERE score > 0.5) AS above_0_5,
    count(*) FILTER (WHERE score > 0.8) AS above_0_8,
    avg((score > 0.2)::INTEGER) AS share_above_0_2,
    avg((score > 0.5)::INTEGER) AS share_above_0_5,
    avg((score > 0.8)::INTEGER) AS share_above_0_8
FROM nsfw
GROUP BY category
ORDER BY category;
