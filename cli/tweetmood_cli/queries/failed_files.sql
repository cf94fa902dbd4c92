-- Inputs whose latest manifest says failed, with the reason and whether another try may help.
SELECT source_key,
       source_etag,
       rows_read,
       attempts,
       retryable,
       reason,
       finished
FROM manifests
WHERE status = 'failed'
ORDER BY finished DESC, source_key
