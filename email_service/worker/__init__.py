"""The worker process: leases, fair share, which listeners run."""
