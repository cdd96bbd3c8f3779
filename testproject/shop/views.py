"""Views that create an order and enqueue its jobs in the same transaction."""

import json

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


@csrf_exempt
@require_POST
async def create_order_async(request: HttpRequest) -> JsonResponse:
    """The async flavour: the ORM call and the enqueue each await Django's sync layer."""
    email, total = _order_fields(request)
    order = await Order.objects.acreate(customer_email=email, total_cents=total)
    job_id = await fulfill_order.aenqueue(order_id=order.pk)
    return JsonResponse({"order": order.pk, "jobs": [job_id]}, status=201)
