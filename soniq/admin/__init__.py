"""The Django admin for soniq: jobs, dead letters, workers, schedules and a dashboard.

Importing this package (Django's admin autodiscovery does) registers the pages.
"""

from soniq.admin import dead_letters, jobs, schedules, workers

__all__ = ["dead_letters", "jobs", "schedules", "workers"]
