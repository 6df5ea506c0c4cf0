from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from analytics.views import admin_home
from loyalty_site.health import healthz, metrics

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    # Before the admin's own URLs, so its catch-all does not take these pages.
    path("admin/analytics/", include("analytics.urls")),
    # /admin/ opens the analytics dashboard for marketing and finance (the index otherwise).
    path("admin/", admin.site.admin_view(admin_home), name="admin_home"),
    path("admin/", admin.site.urls),
    path("api/v1/me/", include("portal.api.urls")),
    path("api/v1/", include("pos.api.urls")),
    path("my/", include("portal.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("c/", include("campaigns.urls")),  # message opt-out link, SMS reply hook
]
