"""ASGI entry point: HTTP through Django, websockets under /ws/ through Channels; on
PostgreSQL the labeling API's next-item and submit go through the fast path
(api/fastpath.py) first."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
django_asgi_app = get_asgi_application()

# Routing imports models: only after Django is set up.
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from api import fastpath  # noqa: E402
from feedback.routing import websocket_urlpatterns  # noqa: E402

http_app = fastpath.LabelingFastPath(django_asgi_app) if fastpath.enabled() else django_asgi_app

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)

# Everything loaded so far (Django, DRF, the URL and model registries) lives as long as the
# process: moved out of the garbage collector's reach, a full collection no longer walks it.
# Measured under the labeling load: full collections of 120-150 ms each, which stalled every
# request of the worker (docs/benchmarks.md).
gc.freeze()
