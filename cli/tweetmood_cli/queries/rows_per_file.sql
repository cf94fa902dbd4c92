-- Rows read, scored and rejected in each result file.
SELECT "$path" AS file,
       count(*) AS rows_read,
       count(label) AS rows_scored,
       count(error) AS rows_rejected
FROM results
GROUP BY "$path"
ORDER BY file
