-- nsfw: the six NSFW probabilities in long form (uuid, category, score), NULL scores left out.
CREATE OR REPLACE VIEW nsfw AS
SELECT uuid, category, score, nsfw_model
FROM (
    UNPIVOT (SELECT uuid, nsfw_model, toxicity, obscene, identity_attack, insult, threat,
                    sexual_explicit FROM prompts)
    ON toxicity, obscene, identity_attack, insult, threat, sexual_explicit
    INTO NAME category VALUE score
);
