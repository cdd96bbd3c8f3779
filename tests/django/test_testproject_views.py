"""The testproject's views: an order and its jobs commit together, or not at all."""

from __future__ import annotations

import importlib.util
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


HAS_TASKS = importlib.util.find_spec("django.tasks") is not None


@pytest.mark.skipif(not HAS_TASKS, reason="django.tasks is Django 6.0 and newer")
def test_task_view_flow_commits_and_reads_results() -> None:
    from soniq.testing import drain

    client = Client()
    response = client.post(
        "/shop/orders/tasks/",
        data=json.dumps({"email": "dee@example.com", "total_cents": 700}),
        content_type="application/json",
    )
    assert response.status_code == 201
    body = response.json()
    fulfil_id, notify_id = body["tasks"]
    assert client.get(f"/shop/tasks/{fulfil_id}/").json()["status"] == "READY"
    drain(run_scheduled=True)
    fulfilled = client.get(f"/shop/tasks/{fulfil_id}/").json()
    assert fulfilled == {
        "id": fulfil_id,
        "task": "shop.tasks.fulfill_order_task",
        "status": "SUCCESSFUL",
        "attempts": 1,
        "return_value": {"order_id": body["order"]},
        "errors": [],
    }
    notified = client.get(f"/shop/tasks/{notify_id}/").json()
    assert notified["status"] == "SUCCESSFUL" and notified["attempts"] == 2
    assert notified["errors"] == ["builtins.ConnectionError"]
    assert Order.objects.get(pk=body["order"]).fulfilled_at is not None
    assert client.get("/shop/tasks/00000000-0000-4000-8000-000000000000/").status_code == 404

    rolled_back = client.post(
        "/shop/orders/tasks/",
        data=json.dumps({"email": "eve@example.com", "total_cents": 0}),
        content_type="application/json",
    )
    assert rolled_back.status_code == 400
    assert Job.objects.count() == 2


@pytest.mark.skipif(HAS_TASKS, reason="this Django has django.tasks")
def test_task_views_say_they_need_django_6() -> None:
    response = Client().post("/shop/orders/tasks/", data="{}", content_type="application/json")
    assert response.status_code == 501
    assert Client().get("/shop/tasks/x/").status_code == 501
