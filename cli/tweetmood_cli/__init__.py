"""The laptop side of tweetmood: the command line, the embedded demo stack, the report and test helpers (never in the Lambda layer)."""
