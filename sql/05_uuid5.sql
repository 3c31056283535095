-- uuid5(text): uuid5(NAMESPACE_DNS, text), the id VidProM gives each prompt and VidLake gives
-- new ones (SHA-1 of the DNS namespace's 16 bytes and the text's UTF-8 bytes, as a version-5
-- UUID). To check a lake's ids against its texts:
--   select count(*) from prompts where uuid_mismatch is distinct from (uuid <> uuid5(prompt));
-- (0: every uuid_mismatch flag agrees with the text, and every id made by VidLake is right).
CREATE OR REPLACE MACRO uuid5(t) AS concat(substr(sha1(unhex('6ba7b8109dad11d180b400c04fd430c8') || encode(t)), 1, 8), '-', substr(sha1(unhex('6ba7b8109dad11d180b400c04fd430c8') || encode(t)), 9, 4), '-5', substr(sha1(unhex('6ba7b8109dad11d180b400c04fd430c8') || encode(t)), 14, 3), '-', substr('89ab89ab89ab89ab', instr('0123456789abcdef', substr(sha1(unhex('6ba7b8109dad11d180b400c04fd430c8') || encode(t)), 17, 1)), 1), substr(sha1(unhex('6ba7b8109dad11d180b400c04fd430c8') || encode(t)), 18, 3), '-', substr(sha1(unhex('6ba7b8109dad11d180b400c04fd430c8') || encode(t)), 21, 12));
