-- gallery: prompts joined to their videos, one row per (prompt, video); prompts without any
-- video appear once with NULL video columns.
CREATE OR REPLACE VIEW gallery AS
SELECT
    p.*,
    v.video_id, v.model, v.codec, v.width, v.height, v.fps, v.num_frames, v.duration_s,
    v.bytes, v.sha256, v.batch_id AS video_batch_id
FROM prompts AS p
LEFT JOIN videos AS v USING (uuid);
