"""The DynamoDB tests' fixtures (imported by tests as ``dynamodb_server``): moto's server, a fresh
table's URL for each test, and a plain boto3 client to look beneath statekeel."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from conftest import running
from statekeel.testing.servers.dynamodb import DynamoDBServer

__all__ = ["raw", "server", "table_name", "url"]

_tables = itertools.count()


@pytest.fixture(scope="module")
def server() -> Iterator[DynamoDBServer]:
    yield from running(DynamoDBServer())


@pytest.fixture
def url(server: DynamoDBServer) -> str:
    """A table no test used before (created when a store opens it)."""
    return server.url(f"sk_dyn_{time.time_ns()}_{next(_tables)}")


@pytest.fixture
def raw(server: DynamoDBServer) -> Any:
    """A boto3 client of the same server, for reading and damaging items behind statekeel's back."""
    return boto3.client("dynamodb", region_name="us-east-1", endpoint_url=server.endpoint)


def table_name(url: str) -> str:
    """The table a ``dynamodb://`` URL names."""
    return url.split("://", 1)[1].split("?", 1)[0]
