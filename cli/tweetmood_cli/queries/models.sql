-- Scored rows and files per model version.
SELECT model,
       count(*) AS rows_scored,
       count(DISTINCT "$path") AS files
FROM results
WHERE model IS NOT NULL
GROUP BY model
ORDER BY rows_scored DESC, model
