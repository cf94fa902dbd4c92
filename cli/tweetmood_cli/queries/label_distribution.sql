-- Scored rows per label over every result file, with each label's share.
SELECT label,
       count(*) AS rows_scored,
       round(100.0 * count(*) / sum(count(*)) OVER (), 2) AS share_pct,
       round(avg(score), 4) AS mean_score
FROM results
WHERE label IS NOT NULL
GROUP BY label
ORDER BY rows_scored DESC, label
