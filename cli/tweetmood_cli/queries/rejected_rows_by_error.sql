-- Rejected rows per error code, the files they are in, and one example message.
SELECT error,
       count(*) AS rows_rejected,
       count(DISTINCT "$path") AS files,
       min(message) AS example
FROM results
WHERE error IS NOT NULL
GROUP BY error
ORDER BY rows_rejected DESC, error
