-- Scored rows whose top score is below the low-confidence threshold, least confident first.
SELECT "$path" AS file,
       line,
       id,
       label,
       score,
       text
FROM results
WHERE label IS NOT NULL AND score < ${LowConfidenceThreshold}
ORDER BY score, file, line
