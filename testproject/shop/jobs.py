"""The shop's background jobs."""

from django.utils import timezone
from pydantic import BaseModel, Field

from config.tasks import app
from shop.models import Order
from soniq import JobContext


@app.job(queue="orders", retries=5, retry_delay=[1, 5, 30])
def fulfill_order(order_id: int, ctx: JobContext) -> dict:
    """Mark the order fulfilled; runs in a worker thread with the ORM available."""
    order = Order.objects.get(pk=order_id)
    order.fulfilled_at = timezone.now()
    order.save(update_fields=["fulfilled_at"])
    return {"order_id": order.pk, "attempt": ctx.attempt}


class ReceiptArgs(BaseModel):
    to: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    order_id: int


@app.job(queue="emails", validate=ReceiptArgs, unique=True)
async def send_receipt(to: str, order_id: int) -> str:
    return f"receipt for order {order_id} sent to {to}"
