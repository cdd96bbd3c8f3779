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
