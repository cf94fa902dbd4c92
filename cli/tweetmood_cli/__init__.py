"""Laptop-side tweetmood: commands and tools that never ship to Lambda (the report, for now)."""
