from django.contrib import admin
from django.urls import include, path

from soniq.views import metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("shop/", include("shop.urls")),
    # Prometheus' queue gauges (soniq.views.metrics; the prometheus extra). Keep such an
    # endpoint off the public internet.
    path("soniq/metrics", metrics, name="soniq-metrics"),
]
