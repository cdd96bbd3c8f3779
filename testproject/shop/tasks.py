"""The shop's ``django.tasks`` tasks (Django 6.0 and newer), stored and run by soniq through
``TASKS``' ``soniq.tasks.SoniqBackend``: the same table, worker and admin as ``shop.jobs``."""

from django.tasks import TaskContext, task
from django.utils import timezone

from shop.models import Order


@task()
def fulfill_order_task(order_id: int) -> dict:
    """Mark the order fulfilled; a sync task runs in a worker thread with the ORM available."""
    order = Order.objects.get(pk=order_id)
    order.fulfilled_at = timezone.now()
    order.save(update_fields=["fulfilled_at"])
    return {"order_id": order.pk}


@task(takes_context=True, priority=50, max_attempts=3, retry_delay=0.2)
def notify_warehouse(context: TaskContext, order_id: int) -> str:
    """Fails on its first attempt (the warehouse is busy), succeeds on the next one."""
    if context.attempt < 2:
        raise ConnectionError(f"warehouse busy (attempt {context.attempt})")
    return f"warehouse told about order {order_id} on attempt {context.attempt}"


@task(queue_name="emails")
async def thank_customer(email: str) -> str:
    """An async task runs on the worker's event loop."""
    return f"thanked {email}"
