"""Service layer: a run of the pipeline over a directory, the scheduler, Prometheus."""
