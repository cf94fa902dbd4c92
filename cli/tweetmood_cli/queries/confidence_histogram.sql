-- Scored rows per label in twenty score bins of width 0.05 (bin_start 0.95 holds scores up to 1).
SELECT label,
       least(floor(score * 20), 19) / 20.0 AS bin_start,
       count(*) AS rows_scored
FROM results
WHERE label IS NOT NULL
GROUP BY label, least(floor(score * 20), 19)
ORDER BY label, bin_start
