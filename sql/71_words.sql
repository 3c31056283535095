-- stop_words / prompt_tokens / top_words / top_bigrams: most frequent words and adjacent word pairs, English stop words and 1-letter tokens removed.
CREATE OR REPLACE TEMP VIEW stop_words AS
SELECT unnest(string_split(
    'a,about,above,after,again,against,all,am,an,and,any,are,as,at,be,because,been,before,being,'
    'below,between,both,but,by,can,could,did,do,does,doing,down,during,each,few,for,from,further,'
    'had,has,have,having,he,her,here,hers,herself,him,himself,his,how,i,if,in,into,is,it,its,'
    'itself,just,me,more,most,my,myself,no,nor,not,now,of,off,on,once,only,or,other,our,ours,'
    'ourselves,out,over,own,same,she,should,so,some,such,than,that,the,their,theirs,them,'
    'themselves,then,there,these,they,this,those,through,to,too,under,until,up,very,was,we,were,'
    'what,when,where,which,while,who,whom,why,will,with,would,you,your,yours,yourself,yourselves,'
    's,t,don,amp,quot,nbsp,gt,lt', ',')) AS word;

CREATE OR REPLACE TEMP VIEW prompt_tokens AS
SELECT uuid, source, regexp_extract_all(lower(coalesce(prompt_clean, prompt)), '[a-z0-9]+(?:''[a-z]+)?') AS tokens
FROM prompts;

CREATE OR REPLACE TEMP VIEW top_words AS
WITH w AS (
    SELECT uuid, unnest(tokens) AS word FROM prompt_tokens
)
SELECT word, count(*) AS occurrences, count(DISTINCT uuid) AS prompts
FROM w
WHERE length(word) > 1 AND word NOT IN (SELECT word FROM stop_words)
GROUP BY word
ORDER BY occurrences DESC, word
LIMIT 1000;

CREATE OR REPLACE TEMP VIEW top_bigrams AS
WITH b AS (
    -- two unnests in one SELECT run side by side: (token i, token i+1)
    SELECT uuid, unnest(tokens[1:-2]) AS w1, unnest(tokens[2:]) AS w2
    FROM prompt_tokens
    WHERE len(tokens) > 1
)
SELECT w1 || ' ' || w2 AS bigram, count(*) AS occurrences, count(DISTINCT uuid) AS prompts
FROM b
WHERE length(w1) > 1 AND length(w2) > 1
  AND w1 NOT IN (SELECT word FROM stop_words) AND w2 NOT IN (SELECT word FROM stop_words)
GROUP BY bigram
ORDER BY occurrences DESC, bigram
LIMIT 1000;
