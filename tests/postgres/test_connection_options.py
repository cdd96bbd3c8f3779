"""Every connection soniq opens notices a vanished peer in seconds: TCP keepalives,
tcp_user_timeout and connect_timeout on the client's side, and on the server's side for the
worker's session."""

from __future__ import annotations

import pytest

from soniq.backends.postgres import PostgresBackend
from soniq.backends.postgres.conninfo import network_options
from soniq.core.settings import SoniqSettings
from tests.helpers import conninfo


def _options(connection: object) -> dict[str, str]:
    info = connection.pgconn.info  # type: ignore[attr-defined]
    return {
        option.keyword.decode(): option.val.decode() for option in info if option.val is not None
    }


@pytest.mark.asyncio
async def test_pooled_connections_use_the_network_settings() -> None:
    settings = SoniqSettings(tcp_keepalives_idle=7, tcp_user_timeout=2.5, connect_timeout=3)
    backend = PostgresBackend(conninfo(), settings=settings)
    try:
        async with backend.acquire() as connection:
            options = _options(connection)
        with backend.acquire_sync() as sync_connection:
            sync_options = _options(sync_connection)
    finally:
        await backend.close()
    expected = {
        "keepalives": "1",
        "keepalives_idle": "7",
        "keepalives_interval": "2",
        "keepalives_count": "3",
        "tcp_user_timeout": "2500",
        "connect_timeout": "3",
    }
    assert {key: options.get(key) for key in expected} == expected
    assert {key: sync_options.get(key) for key in expected} == expected


@pytest.mark.parametrize(
    "url", ["postgresql://app@db.example/jobs?keepalives_idle=60", "host=db keepalives_idle=60"]
)
def test_a_parameter_in_the_url_wins(url: str) -> None:
    options = network_options(SoniqSettings(), url)
    assert "keepalives_idle" not in options
    assert options["keepalives_interval"] == 2
    assert "tcp_user_timeout" not in network_options(SoniqSettings(tcp_user_timeout=0), conninfo())


@pytest.mark.asyncio
async def test_the_worker_session_sets_keepalives_on_the_server_side() -> None:
    settings = SoniqSettings(tcp_keepalives_idle=9, tcp_keepalives_count=4, tcp_user_timeout=6)
    backend = PostgresBackend(conninfo(), settings=settings)
    session = await backend.open_session(listen=False)
    try:
        cursor = await session.connection.execute(
            "SELECT current_setting('tcp_keepalives_idle'), "
            "current_setting('tcp_keepalives_count'), current_setting('tcp_user_timeout')"
        )
        assert await cursor.fetchone() == ("9", "4", "6000")  # milliseconds
    finally:
        await session.close()
        await backend.close()
