-- Each complete file in the order it finished, with the rows scored and rejected so far.
SELECT finished,
       source_key,
       rows_scored,
       rows_rejected,
       sum(rows_scored) OVER (ORDER BY finished, source_key ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS rows_scored_so_far,
       sum(rows_rejected) OVER (ORDER BY finished, source_key ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS rows_rejected_so_far
FROM manifests
WHERE status = 'complete'
ORDER BY finished, source_key
