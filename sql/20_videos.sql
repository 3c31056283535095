-- videos: one row per video with its probe metadata; the mp4 bytes stay in Lance
-- (read them with `vidlake video` or Lake.open_video), only their size is exposed here.
CREATE OR REPLACE VIEW videos AS
SELECT {{videos_columns}}, thumbnail IS NOT NULL AS has_thumbnail FROM videos_raw;
