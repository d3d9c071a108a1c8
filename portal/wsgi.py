"""WSGI entry point: `gunicorn --worker-class portal.serving.PortalWorker portal.wsgi:app`.

The worker class gives gunicorn's own error answers the portal's security headers.
"""

from portal.app import create_app

app = create_app()
