"""WSGI entry point: `gunicorn --worker-class portal.serving.PortalWorker portal.wsgi:app`.

The worker class gives gunicorn's own error answers the portal's security headers.
"""

from portal.app import create_app
from portal.backup.guard import refuse_connections_while_unfinished
from portal.db import db

app = create_app()
# A restored database is not served until the purge after the restore has succeeded.
refuse_connections_while_unfinished(db.bound(app).engine)
