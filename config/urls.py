from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path, register_converter

from config.converters import IdConverter

register_converter(IdConverter, "id")  # before the apps' URL modules below use it

from api.base import not_found as api_not_found  # noqa: E402

handler400 = "config.errors.bad_request"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # The public API first: it serves the labeling endpoints' URLs too (see api/urls.py).
    path("api/", include("api.urls")),
    path("", include("feedback.urls")),
    path("", include("training.urls")),
    path("", include("training.data_urls")),
    path("", include("training.arena_urls")),
    # Last: an /api/ address no endpoint matched gets the API's JSON error body.
    re_path(r"^api/", api_not_found),
]
