"""Webhook delivery: a background task of every proxy process, off the hot path.

Which webhooks exist comes from the snapshot (webhooks are records of their project, synced
like flags); the entries come from each project's audit stream through the fleet's one consumer
group (proxy.store.audit), so each entry is handed to one proxy, which delivers it to every
webhook that wants it (proxy.domain.webhooks.wants) and then acknowledges it. A proxy that dies
with entries pending leaves them to be claimed by another after EDGE_WEBHOOK_CLAIM_TIMEOUT
seconds: exactly once per webhook while proxies live, at least once through crashes. A proxy
that stops (SIGTERM) marks what it was delivering as idle, so the next claim takes it at once.

Only projects with an enabled webhook are read, once a second and at once after any change
reaches this proxy. Failed attempts are retried with exponential backoff and jitter while the
entry stays pending (claimed again for itself every third of the claim timeout, so that nobody
takes it over while it waits); a webhook whose attempts fail DISABLE_AFTER times in a row is
disabled by a configuration write of its own (actor `webhook-delivery`). Every attempt has a
timeout, at most EDGE_WEBHOOK_CONCURRENCY run at once, and no redirect is followed.

SSRF: the target's host is resolved at every attempt, each address is checked
(proxy.domain.model.address_refusal) unless EDGE_WEBHOOK_ALLOW_PRIVATE, and the request goes to
the address that was checked (the URL's host replaced by it, the Host header and TLS's server
name kept), so a DNS answer that changes between the check and the connection cannot redirect it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from redis.exceptions import RedisError

from proxy.domain import audit, changes, model, webhooks
from proxy.domain.model import Webhook
from proxy.runtime import Runtime
from proxy.store.audit import Raw, decode

log = logging.getLogger("proxy.webhooks")

POLL_INTERVAL = 1.0  # seconds between reads of the streams when no change wakes the loop
READS_PER_ROUND = 50  # full batches read on at once: a backlog nobody wants is cleared fast
RESOLVE_TIMEOUT = 2.0
PRUNE_EVERY, PRUNE_IDLE_MS = 600.0, 3_600_000  # forget consumers idle an hour, holding nothing
USER_AGENT = "edge-proxy-webhooks/1"
ACTOR = audit.local_actor("webhook-delivery")


class Refused(Exception):
    """A target that may not be sent to: it does not resolve, or resolves to a private
    address. The message says which, for a 422 or the deliveries log."""


@dataclass(frozen=True, slots=True)
class Target:
    url: httpx.URL  # the webhook's URL with the checked address in place of its host
    host: str  # the Host header: the URL's own host (and port)
    server_name: str | None  # https: the name TLS sends (SNI) and verifies the certificate for


async def resolve(url: str, *, allow_private: bool, timeout: float = RESOLVE_TIMEOUT) -> Target:
    """Where to send a request for `url` (valid by proxy.domain.model.webhook_url): its host's
    first address, once every address it resolves to has passed the SSRF rule."""
    parsed = httpx.URL(url)
    host = parsed.host
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout
        )
    except (OSError, TimeoutError, UnicodeError):
        raise Refused(f"{host} does not resolve") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise Refused(f"{host} does not resolve")
    if not allow_private:
        for address in addresses:
            reason = model.address_refusal(address)
            if reason is not None:
                where = address if address == host else f"{host} resolves to {address}, which"
                raise Refused(f"{where} {reason}")
    return Target(
        url=parsed.copy_with(host=addresses[0]),
        host=parsed.netloc.decode("ascii"),
        server_name=host if parsed.scheme == "https" else None,
    )


def _now_ms() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Delivery:
    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings
        self.store = runtime.store
        self.log = runtime.audit
        self.webhooks = runtime.webhooks
        self.sync = runtime.sync
        # One consumer per process, named so that an operator can tell whose entries are pending.
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.allow_private = settings.webhook_allow_private
        self.timeout = settings.webhook_timeout
        self.claim_timeout = settings.webhook_claim_timeout
        self.retry_base = settings.webhook_retry_base
        self.retry_max = settings.webhook_retry_max
        self.concurrency = settings.webhook_concurrency
        # Entries worked on at once: each may wait out retries, so more than the requests.
        self.max_in_flight = 4 * settings.webhook_concurrency
        self.slots = asyncio.Semaphore(settings.webhook_concurrency)
        self.in_flight: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._next_claim: dict[str, float] = {}
        self._claim_cursor: dict[str, str] = {}
        self._next_touch = 0.0
        self._next_prune = 0.0
        self._secrets: dict[tuple[str, str], str] = {}
        self._seen: object = None
        self._projects: list[str] = []
        self.client: httpx.AsyncClient | None = None
        # Metrics.
        self.outcomes = {"delivered": 0, "failed": 0, "refused": 0}
        self.disabled = 0
        self.pending: dict[str, int] = {}
        self.redis_errors = 0
        self.sync.listeners.append(self._wake.set)

    # Which webhooks exist: the snapshot's records --------------------------------------------

    def _hooks(self, project_id: str) -> Mapping[str, Webhook]:
        project = self.sync.snapshot.projects.get(project_id)
        if project is None:
            return {}
        hooks: Mapping[str, Webhook] = project.records.get("webhooks", {})
        return hooks

    def projects(self) -> list[str]:
        """The projects with an enabled webhook (recomputed only when the snapshot changes)."""
        snapshot = self.sync.snapshot
        if snapshot is not self._seen:
            self._seen = snapshot
            self._projects = [
                pid
                for pid in snapshot.projects
                if any(w["enabled"] for w in self._hooks(pid).values())
            ]
        return self._projects

    # The loop ----------------------------------------------------------------------------------

    async def run(self) -> None:
        self.client = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment: it would bypass the address check
            timeout=self.timeout,
            limits=httpx.Limits(max_connections=self.concurrency),
            headers={"user-agent": USER_AGENT},
        )
        # Often enough that an entry being worked on is claimed back for itself well within the
        # claim timeout.
        interval = min(POLL_INTERVAL, self.claim_timeout / 3)
        try:
            while True:
                self._wake.clear()
                try:
                    await self._round()
                except Exception:  # a bug: deliveries must not stop for good because of it
                    log.exception("webhook delivery round failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), interval)
        finally:
            # What is cut short stays pending, handed over to whichever proxy claims next.
            in_flight = list(self.in_flight)
            tasks = list(self.in_flight.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.client.aclose()
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await asyncio.wait_for(self._release(in_flight), 1.0)

    async def _release(self, in_flight: list[tuple[str, str]]) -> None:
        by_project: dict[str, list[str]] = {}
        for project_id, entry_id in in_flight:
            by_project.setdefault(project_id, []).append(entry_id)
        idle_ms = int(self.claim_timeout * 1000) + 1
        for project_id, ids in by_project.items():
            await self.log.release(project_id, self.consumer, ids, idle_ms)

    async def _round(self) -> None:
        now = time.monotonic()
        if now >= self._next_touch:
            self._next_touch = now + self.claim_timeout / 3
            await self._guarded(self._touch())
        prune = now >= self._next_prune
        if prune:
            self._next_prune = now + PRUNE_EVERY
        projects = self.projects()
        for gone in self.pending.keys() - set(projects):
            del self.pending[gone]  # no enabled webhook left: not read, not reported
        for project_id in projects:
            await self._guarded(self._serve(project_id, now, prune))

    async def _guarded(self, work: Any) -> None:
        try:
            await work
        except (RedisError, OSError) as e:
            self.redis_errors += 1
            log.warning("webhook delivery could not reach Redis (%s)", type(e).__name__)

    async def _touch(self) -> None:
        by_project: dict[str, list[str]] = {}
        for project_id, entry_id in self.in_flight:
            by_project.setdefault(project_id, []).append(entry_id)
        for project_id, ids in by_project.items():
            await self.log.touch(project_id, self.consumer, ids)

    async def _serve(self, project_id: str, now: float, prune: bool) -> None:
        free = self.max_in_flight - len(self.in_flight)
        if free > 0 and now >= self._next_claim.get(project_id, 0.0):
            self._next_claim[project_id] = now + max(POLL_INTERVAL, self.claim_timeout / 2)
            cursor, claimed = await self.log.claim(
                project_id,
                self.consumer,
                int(self.claim_timeout * 1000),
                self._claim_cursor.get(project_id, "0-0"),
                free,
            )
            self._claim_cursor[project_id] = cursor
            await self._dispatch(project_id, claimed)
            self.pending[project_id] = await self.log.pending(project_id)
            if prune:
                await self.log.prune_consumers(project_id, self.consumer, PRUNE_IDLE_MS)
        for _ in range(READS_PER_ROUND):
            free = self.max_in_flight - len(self.in_flight)
            if free <= 0:
                return
            rows = await self.log.read_new(project_id, self.consumer, free)
            await self._dispatch(project_id, rows)
            if len(rows) < free:
                return  # caught up

    async def _dispatch(self, project_id: str, rows: list[Raw]) -> None:
        """Start a delivery for each entry some webhook wants; acknowledge the others at once,
        together (say, what was logged while the project had no webhook)."""
        hooks = self._hooks(project_id).values()
        unwanted = []
        for entry_id, fields in rows:
            try:
                entry = decode(entry_id, fields)
            except (KeyError, ValueError):
                log.warning("audit entry %s cannot be read; not delivered", entry_id)
                unwanted.append(entry_id)
                continue
            if any(webhooks.wants(w, entry) for w in hooks):
                self._start(project_id, entry_id, fields)
            elif (project_id, entry_id) not in self.in_flight:
                unwanted.append(entry_id)
        await self.log.ack(project_id, *unwanted)

    def _start(self, project_id: str, entry_id: str, fields: Mapping[bytes, bytes]) -> None:
        key = (project_id, entry_id)
        if key in self.in_flight:
            return  # claimed back while this process still works on it
        task = asyncio.create_task(self._handle(project_id, entry_id, fields))
        self.in_flight[key] = task
        task.add_done_callback(lambda _: self.in_flight.pop(key, None))

    # One entry ---------------------------------------------------------------------------------

    async def _handle(self, project_id: str, entry_id: str, fields: Mapping[bytes, bytes]) -> None:
        """Deliver one entry to every webhook that wants it, then acknowledge it. A Redis
        failure leaves it pending, to be claimed again; a bug is logged and the entry dropped,
        so that it cannot come back forever."""
        try:
            entry = decode(entry_id, fields)
            body = webhooks.payload(entry)
            hooks = [w for w in self._hooks(project_id).values() if webhooks.wants(w, entry)]
            await asyncio.gather(*(self._deliver(project_id, w["id"], entry, body) for w in hooks))
        except (RedisError, OSError) as e:
            self.redis_errors += 1
            log.warning("webhook delivery of %s left pending (%s)", entry_id, type(e).__name__)
            return
        except Exception:
            log.exception("webhook delivery of audit entry %s failed; dropped", entry_id)
        await self._guarded(self.log.ack(project_id, entry_id))

    async def _deliver(
        self, project_id: str, webhook_id: str, entry: Mapping[str, Any], body: bytes
    ) -> None:
        """Attempt until one succeeds, MAX_ATTEMPTS, or the webhook no longer wants the entry
        (deleted, disabled, enabled again since, or no longer subscribed to its action)."""
        for attempt in range(1, webhooks.MAX_ATTEMPTS + 1):
            hook = self._hooks(project_id).get(webhook_id)
            if hook is None:
                self._secrets.pop((project_id, webhook_id), None)
                return
            if not webhooks.wants(hook, entry):
                return
            ok, failures = await self._attempt(project_id, hook, entry, body, attempt)
            if ok or failures < 0:
                return
            if failures >= webhooks.DISABLE_AFTER:
                await self._disable(project_id, webhook_id)
                return
            if attempt < webhooks.MAX_ATTEMPTS:
                await asyncio.sleep(webhooks.retry_delay(attempt, self.retry_base, self.retry_max))
        log.warning("webhook %s: gave up on audit entry %s", webhook_id, entry["id"])

    async def _attempt(
        self,
        project_id: str,
        hook: Webhook,
        entry: Mapping[str, Any],
        body: bytes,
        attempt: int,
    ) -> tuple[bool, int]:
        """One POST; returns whether it succeeded and the failures in a row after it."""
        assert self.client is not None
        message_id = webhooks.message_id(entry["id"], hook["id"])
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        outcome = "failed"
        try:
            secret = await self._secret(project_id, hook["id"])
            target = await resolve(hook["url"], allow_private=self.allow_private)
            headers = webhooks.headers(secret, message_id, int(time.time()), body)
            request = self.client.build_request(
                "POST",
                target.url,
                content=body,
                headers={**headers, "host": target.host},
                extensions={"sni_hostname": target.server_name} if target.server_name else {},
            )
            async with self.slots:
                response = await asyncio.wait_for(
                    self.client.send(request, stream=True), self.timeout
                )
                await response.aclose()  # the status is the answer; the body is not read
            status = response.status_code
            if 200 <= status < 300:
                outcome = "delivered"
            elif 300 <= status < 400:
                error = f"HTTP {status}: redirects are not followed"
            else:
                error = f"HTTP {status}"
        except Refused as e:
            outcome, error = "refused", str(e)
        except TimeoutError:
            error = f"no answer within {self.timeout:g} s"
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        except RedisError:
            raise  # the entry stays pending: nothing was settled
        except Exception as e:  # unforeseen: a failed attempt of this webhook, not a lost entry
            log.exception("webhook %s: attempt failed unexpectedly", hook["id"])
            error = type(e).__name__
        self.outcomes[outcome] += 1
        ok = outcome == "delivered"
        record = {
            "entry_id": entry["id"],
            "message_id": message_id,
            "type": entry["action"],
            "attempt": attempt,
            "status": status,
            "ok": ok,
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
            "error": error,
            "at": _now_ms(),
        }
        return ok, await self.webhooks.record_attempt(project_id, hook["id"], record, ok)

    async def _secret(self, project_id: str, webhook_id: str) -> str:
        key = (project_id, webhook_id)
        secret = self._secrets.get(key)
        if secret is None:
            secret = await self.webhooks.secret(project_id, webhook_id)
            if secret is None:  # written before the record: only a deleted webhook has none
                raise Refused("the webhook has no signing secret (deleted)")
            self._secrets[key] = secret
        return secret

    async def _disable(self, project_id: str, webhook_id: str) -> None:
        disabled, version = await self.store.mutate(
            project_id,
            lambda s: changes.disable_webhook(
                s, webhook_id, webhooks.DISABLED_REASON, now=model.now()
            ),
            actor=ACTOR,
        )
        if disabled:
            self.disabled += 1
            log.warning("webhook %s disabled: %s", webhook_id, webhooks.DISABLED_REASON)
            await self.sync.refresh(project_id, at_least=version)

    # Metrics -----------------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        attempts = CounterMetricFamily(
            "edge_webhook_deliveries",
            "Webhook delivery attempts by this process, by outcome (refused: the SSRF rule)",
            labels=["outcome"],
        )
        for outcome, n in sorted(self.outcomes.items()):
            attempts.add_metric([outcome], n)
        yield attempts
        yield GaugeMetricFamily(
            "edge_webhook_entries_in_flight",
            "Audit entries this process is delivering (retries included)",
            len(self.in_flight),
        )
        pending = GaugeMetricFamily(
            "edge_webhook_pending_entries",
            "Audit entries handed to a proxy and not yet acknowledged, fleet-wide, as last read",
            labels=["project"],
        )
        for project_id, n in sorted(self.pending.items()):
            pending.add_metric([project_id], n)
        yield pending
        yield GaugeMetricFamily(
            "edge_webhooks_disabled",
            "Webhooks disabled after consecutive failed deliveries",
            sum(
                1
                for pid in self.sync.snapshot.projects
                for w in self._hooks(pid).values()
                if not w["enabled"] and w.get("disabled_reason")
            ),
        )
        yield CounterMetricFamily(
            "edge_webhook_disablings",
            "Webhooks this process disabled after consecutive failed deliveries",
            self.disabled,
        )
