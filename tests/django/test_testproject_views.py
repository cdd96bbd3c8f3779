"""The testproject's views: an order and its jobs commit together, or not at all."""

from __future__ import annotations

import json

import pytest
from django.test import AsyncClient, Client

from config.tasks import app
from shop.models import Order
from soniq.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


def test_view_commits_order_and_jobs_together() -> None:
    response = Client().post(
        "/shop/orders/",
        data=json.dumps({"email": "ann@example.com", "total_cents": 1200}),
        content_type="application/json",
    )
    assert response.status_code == 201
    body = response.json()
    order = Order.objects.get(pk=body["order"])
    jobs = {job.task_name: job for job in Job.objects.filter(pk__in=body["jobs"])}
    assert set(jobs) == {"shop.jobs.fulfill_order", "shop.jobs.send_receipt"}
    assert jobs["shop.jobs.fulfill_order"].args == {"order_id": order.pk}
    assert jobs["shop.jobs.fulfill_order"].queue == "orders"
    info = app.get_job_sync(body["jobs"][1])
    assert info is not None and info.args == {"to": "ann@example.com", "order_id": order.pk}


def test_rolled_back_view_leaves_neither_order_nor_job() -> None:
    response = Client().post(
        "/shop/orders/",
        data=json.dumps({"email": "bob@example.com", "total_cents": 0}),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert Order.objects.count() == 0
    assert Job.objects.count() == 0


@pytest.mark.asyncio
async def test_async_view_enqueues(async_db: None) -> None:
    response = await AsyncClient().post(
        "/shop/orders/async/",
        data=json.dumps({"email": "cy@example.com", "total_cents": 500}),
        content_type="application/json",
    )
    assert response.status_code == 201
    fulfill_id, receipt_id = response.json()["jobs"]
    info = await app.get_job(fulfill_id)
    assert info is not None
    assert info.task_name == "shop.jobs.fulfill_order"
    receipt = await app.get_job(receipt_id)
    assert receipt is not None
    assert receipt.args == {"to": "cy@example.com", "order_id": response.json()["order"]}
    assert await Job.objects.filter(pk=fulfill_id).aexists()
