-- Files and rows per day (UTC) on which their scoring started, from the complete manifests.
SELECT substr(started, 1, 10) AS day,
       count(*) AS files,
       sum(rows_read) AS rows_read,
       sum(rows_scored) AS rows_scored,
       sum(rows_rejected) AS rows_rejected
FROM manifests
WHERE status = 'complete'
GROUP BY substr(started, 1, 10)
ORDER BY day
