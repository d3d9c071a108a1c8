"""REST API `/api/v1` for automation, and the personal access tokens that open it."""
