-- Scored rows per label in each result file, with the label's share of that file.
SELECT "$path" AS file,
       label,
       count(*) AS rows_scored,
       round(100.0 * count(*) / sum(count(*)) OVER (PARTITION BY "$path"), 2) AS share_pct
FROM results
WHERE label IS NOT NULL
GROUP BY "$path", label
ORDER BY file, rows_scored DESC, label
