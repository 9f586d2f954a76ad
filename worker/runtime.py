"""What a running process shares: settings, database, clock and the way to enqueue.

Built once per process (`init_runtime`); Celery tasks reach it through `get_runtime`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from worker import celery_app
from worker.clock import Clock, SystemClock
from worker.crm.adapters import CrmAdapter, make_crm
from worker.db import make_engine, make_session_factory
from worker.delivery.message_ids import message_id_domain
from worker.delivery.send import Delivery
from worker.delivery.senders import Sender, make_sender
from worker.intake import sources
from worker.intake.sources import Source
from worker.letters.brand import BrandStore
from worker.letters.render import Renderer
from worker.planning.planner import Planner
from worker.planning.rules import RulesStore
from worker.queue import CeleryDispatcher, Dispatcher
from worker.secrets_store import secret_key
from worker.settings import Settings, load_settings


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    clock: Clock
    dispatcher: Dispatcher
    rules: RulesStore
    planner: Planner
    sender: Sender
    crm: CrmAdapter
    brand: BrandStore
    # How in-task retries wait between tries; tests pass one that does not block.
    sleep: Callable[[float], None] = time.sleep
    _delivery: Delivery | None = field(default=None, repr=False)
    _sources: dict[str, Source] = field(default_factory=dict, repr=False)

    def source(self, name: str) -> Source | None:
        """The webhook source registered as `name`, built once; None when there is none."""
        if name not in self._sources:
            built = sources.build(name, self.settings)
            if built is None:
                return None
            self._sources[name] = built
        return self._sources[name]

    def delivery(self) -> Delivery:
        """Built on first use: only processes that send need the secret key."""
        if self._delivery is None:
            self._delivery = Delivery(
                session_factory=self.session_factory,
                clock=self.clock,
                renderer=Renderer(self.settings.templates_dir),
                sender=self.sender,
                settings=self.settings,
                secret_key=secret_key(self.settings),
                rules=self.rules.get,
                brand=self.brand.get,
                sleep=self.sleep,
            )
        return self._delivery


_current: Runtime | None = None


def build_runtime(
    settings: Settings,
    *,
    clock: Clock | None = None,
    dispatcher: Dispatcher | None = None,
    sender: Sender | None = None,
    crm: CrmAdapter | None = None,
    sleep: Callable[[float], None] = time.sleep,
    pre_ping: bool = True,
) -> Runtime:
    engine = make_engine(settings.effective_database_url, pre_ping=pre_ping)
    app = celery_app.configure(settings)
    rules = RulesStore(settings.rules_file, settings.templates_dir)
    return Runtime(
        settings=settings,
        engine=engine,
        session_factory=make_session_factory(engine),
        clock=clock or SystemClock(),
        dispatcher=dispatcher or CeleryDispatcher(app),
        rules=rules,
        planner=Planner(rules, message_id_domain(settings.mail_from)),
        sender=sender or make_sender(settings.smtp_url, settings.outbox_dir),
        crm=crm or make_crm(settings),
        brand=BrandStore(settings.brand_file),
        sleep=sleep,
    )


def set_runtime(runtime: Runtime | None) -> None:
    global _current
    _current = runtime


def get_runtime() -> Runtime:
    """The process runtime; a worker started by plain `celery -A` builds it from env."""
    global _current
    if _current is None:
        _current = build_runtime(load_settings())
    return _current
