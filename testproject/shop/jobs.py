"""The shop's background jobs."""

from datetime import timedelta

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


# -- jobs the demo uses to show retries, dead letters and scheduling ----------------------


@app.job(queue="reports", retries=3, retry_delay=1)
def build_report(name: str, ctx: JobContext) -> str:
    """Fails twice (a busy upstream), then succeeds on the third attempt."""
    if ctx.attempt < 3:
        raise ConnectionError(f"report service busy (attempt {ctx.attempt})")
    return f"report {name!r} built on attempt {ctx.attempt}"


@app.job(queue="imports", retries=1, retry_delay=0.5)
def import_feed(url: str) -> None:
    """Always fails: after its two attempts it lands in the dead letters."""
    raise ValueError(f"{url} is not a CSV file")


@app.job(queue="reminders")
async def remind(customer_email: str) -> str:
    return f"reminded {customer_email}"


# -- a recurring job: `manage.py soniq_scheduler` enqueues it on its schedule -------------


@app.periodic(every=timedelta(seconds=2), queue="reports")
def count_open_orders() -> str:
    """Every 2 seconds (short, for the demo): how many orders still wait to be fulfilled."""
    waiting = Order.objects.filter(fulfilled_at__isnull=True).count()
    return f"{waiting} order(s) waiting to be fulfilled"
