from django.urls import path

from shop import views

urlpatterns = [
    path("orders/", views.create_order, name="create-order"),
    path("orders/async/", views.create_order_async, name="create-order-async"),
    path("orders/tasks/", views.create_order_with_tasks, name="create-order-tasks"),
    path("tasks/<str:result_id>/", views.task_result, name="task-result"),
]
