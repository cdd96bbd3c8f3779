"""Views that create an order and enqueue its jobs in the same transaction."""

import json

from asgiref.sync import sync_to_async
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from shop.jobs import fulfill_order, send_receipt
from shop.models import Order


def _order_fields(request: HttpRequest) -> tuple[str, int]:
    data = json.loads(request.body or b"{}")
    return str(data.get("email", "")), int(data.get("total_cents", 0))


@csrf_exempt
@require_POST
def create_order(request: HttpRequest) -> JsonResponse:
    """The order and its jobs commit together, or not at all."""
    email, total = _order_fields(request)
    with transaction.atomic():
        order = Order.objects.create(customer_email=email, total_cents=total)
        fulfill_id = fulfill_order.enqueue(order_id=order.pk)
        receipt_id = send_receipt.enqueue(to=email, order_id=order.pk)
        if total <= 0:
            # Rolled back: no order and, because soniq used this very transaction, no jobs.
            transaction.set_rollback(True)
            return JsonResponse({"error": "total_cents must be positive"}, status=400)
    return JsonResponse({"order": order.pk, "jobs": [fulfill_id, receipt_id]}, status=201)


@sync_to_async
def _create_order_with_job(email: str, total: int) -> tuple[Order, str]:
    # Transactions are sync in Django: the order and its job commit together on Django's
    # sync thread, exactly as in the sync view.
    with transaction.atomic():
        order = Order.objects.create(customer_email=email, total_cents=total)
        return order, fulfill_order.enqueue(order_id=order.pk)


@csrf_exempt
@require_POST
async def create_order_async(request: HttpRequest) -> JsonResponse:
    """The async flavour: the order commits with its fulfilment job; the receipt follows."""
    email, total = _order_fields(request)
    order, fulfill_id = await _create_order_with_job(email, total)
    # Outside the transaction, once the order exists: aenqueue commits on its own.
    receipt_id = await send_receipt.aenqueue(to=email, order_id=order.pk)
    return JsonResponse({"order": order.pk, "jobs": [fulfill_id, receipt_id]}, status=201)


# -- Django's task framework (Django 6.0 and newer), stored and run by soniq --------------------


def _tasks_missing() -> JsonResponse:
    return JsonResponse({"error": "django.tasks needs Django 6.0 or newer"}, status=501)


@csrf_exempt
@require_POST
def create_order_with_tasks(request: HttpRequest) -> JsonResponse:
    """The order and its @task tasks commit together, or not at all, as with soniq jobs."""
    try:
        from shop.tasks import fulfill_order_task, notify_warehouse
    except ImportError:
        return _tasks_missing()
    email, total = _order_fields(request)
    with transaction.atomic():
        order = Order.objects.create(customer_email=email, total_cents=total)
        results = [fulfill_order_task.enqueue(order.pk), notify_warehouse.enqueue(order.pk)]
        if total <= 0:
            transaction.set_rollback(True)
            return JsonResponse({"error": "total_cents must be positive"}, status=400)
    return JsonResponse({"order": order.pk, "tasks": [result.id for result in results]}, status=201)


def task_result(request: HttpRequest, result_id: str) -> JsonResponse:
    """A task's state, read back with Django's own API (``get_result``)."""
    try:
        from django.tasks import TaskResultStatus, default_task_backend
        from django.tasks.exceptions import TaskResultDoesNotExist
    except ImportError:
        return _tasks_missing()
    try:
        result = default_task_backend.get_result(result_id)
    except TaskResultDoesNotExist:
        return JsonResponse({"error": f"no task result {result_id}"}, status=404)
    succeeded = result.status == TaskResultStatus.SUCCESSFUL
    return JsonResponse(
        {
            "id": result.id,
            "task": result.task.module_path,
            "status": result.status,
            "attempts": result.attempts,
            "return_value": result.return_value if succeeded else None,
            "errors": [error.exception_class_path for error in result.errors],
        }
    )
