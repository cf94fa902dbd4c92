-- Files, rows read = scored + rejected, mean score and the share of scored rows below the low-confidence threshold.
SELECT count(DISTINCT "$path") AS files,
       count(*) AS rows_read,
       count(label) AS rows_scored,
       count(error) AS rows_rejected,
       round(avg(score), 4) AS mean_score,
       sum(CASE WHEN score < ${LowConfidenceThreshold} THEN 1 ELSE 0 END) AS rows_low_confidence,
       round(100.0 * sum(CASE WHEN score < ${LowConfidenceThreshold} THEN 1 ELSE 0 END) / nullif(count(label), 0), 2) AS low_confidence_pct
FROM results
