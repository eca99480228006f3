"""Running requests: the generation pipeline, the job queue, batch runs and Ray."""
