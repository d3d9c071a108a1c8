"""Operations: the schedule of the jobs and its scheduler, health probes, Prometheus metrics."""
