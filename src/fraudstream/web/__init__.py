"""The analysts' dashboard: a Starlette app over the alert store and the running job's REST API.

`create_app(settings)` builds it; `fraudstream dashboard` serves it with uvicorn. It reads the
store and the job, and writes only analysts' verdicts (`alert_reviews`).
"""

from fraudstream.web.app import create_app

__all__ = ["create_app"]
