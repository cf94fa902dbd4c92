"""tweetmood training job: fine-tune the transformer, train the TF baselines, export, quantize, report."""
