"""`make bench`: speed, memory, cold start and accuracy of every model, and the end-to-end scoring path."""
