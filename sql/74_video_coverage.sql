-- videos_per_model / prompt_video_counts: videos, prompts covered and sizes per model; prompts by how many videos they have (0 to 4 always listed).
CREATE OR REPLACE TEMP VIEW videos_per_model AS
SELECT
    model,
    count(*) AS videos,
    count(DISTINCT uuid) AS prompts,
    count(DISTINCT uuid) / (SELECT count(*) FROM prompts) AS prompt_coverage,
    sum(bytes) AS bytes,
    avg(bytes) AS avg_bytes,
    avg(duration_s) AS avg_duration_s,
    count(*) FILTER (WHERE has_thumbnail) AS with_thumbnail
FROM videos
GROUP BY model
ORDER BY model;

CREATE OR REPLACE TEMP VIEW prompt_video_counts AS
WITH per_prompt AS (
    SELECT p.uuid, count(v.uuid) AS n
    FROM prompts AS p LEFT JOIN (SELECT uuid FROM videos) AS v USING (uuid)
    GROUP BY p.uuid
), counted AS (
    SELECT n AS videos, count(*) AS prompts FROM per_prompt GROUP BY n
), wanted AS (
    SELECT range AS videos FROM range(0, 5)
    UNION
    SELECT videos FROM counted
)
SELECT w.videos, coalesce(c.prompts, 0) AS prompts
FROM wanted AS w LEFT JOIN counted AS c USING (videos)
ORDER BY w.videos;
