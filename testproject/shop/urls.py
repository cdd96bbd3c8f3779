from django.urls import path

from shop import views

urlpatterns = [
    path("orders/", views.create_order, name="create-order"),
    path("orders/async/", views.create_order_async, name="create-order-async"),
]
