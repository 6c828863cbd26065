"""Tariff sync: queue new and changed tariffs of the stations file, and removed ones, to the
partners owed tariffs; an unchanged tariff is queued never again (its digest is kept)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import asdict

import orjson

from cpo_gateway import logs
from cpo_gateway.bridge.catalogue import Catalogue
from cpo_gateway.bridge.owed import Owed
from cpo_gateway.bridge.ports import NewOutbox
from cpo_gateway.bridge.storage import TariffStore
from cpo_gateway.bridge.tariff import Tariff

log = logs.get(__name__)


def tariff_digest(tariff: Tariff) -> str:
    text = orjson.dumps(asdict(tariff), option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(text).hexdigest()


async def sync_tariffs(
    store: TariffStore,
    catalogue: Catalogue,
    partners: Mapping[str, str],
    clock: Callable[[], float],
) -> int:
    """Queue what changed since the last sync, per EMP owed tariffs; returns the count."""
    queued = 0
    current = {t.id: t for t in catalogue.tariffs}
    for emp in partners:
        last = await store.queued_tariffs(emp)
        for tid, tariff in current.items():
            h = tariff_digest(tariff)
            if last.get(tid) == (h, False):
                continue
            row = NewOutbox(emp, Owed.TARIFF, tid, {"tariff_id": tid, "deleted": False})
            await store.queue_tariff(emp, tid, h, False, row, clock())
            queued += 1
        for tid, (h, deleted) in last.items():
            if tid in current or deleted:
                continue
            row = NewOutbox(emp, Owed.TARIFF, tid, {"tariff_id": tid, "deleted": True})
            await store.queue_tariff(emp, tid, h, True, row, clock())
            queued += 1
    if queued:
        log.info("tariff.sync", queued=queued)
    return queued
