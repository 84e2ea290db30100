"""An install's switch as a journalled state machine that a crash cannot leave half done.

Once the checked payload sits in a staging folder, :func:`switch` takes the steps below,
each written to ``var/bundles/journal.json`` before it is taken:

==========  ============================================================================
``store``   the staging folder is renamed to ``store/<name>-<version>-<id>``
``link``    ``var/models`` links are made for the models the new version adds
``switch``  ``active/<name>`` is pointed at the new store folder: **the commit**
``record``  the history line (carrying the install's id) is appended
``clean``   the previous store folder and the links of models no longer shipped go
==========  ============================================================================

:func:`recover`, which every ``bundle`` command runs under the site's lock before
anything else, reads a journal left by a crash and decides by the one fact that
matters, whether ``active/<name>`` points at the journal's store folder: if it does,
the install is rolled forward (history, clean-up); if not, it is rolled back (the links
it added and its folders removed). Either way the site ends in exactly the state before
the install or the one after it, and the journal is removed. The audit record follows
the history (see ``botarena.bundles.cli``: every history line not yet in the audit
chain is appended, by id, when the hub's database answers).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from botarena.bundles.site import STORE, Site, replace_link
from botarena.server.files import write_atomic

STEPS = ("store", "link", "switch", "record", "clean")

Step = Callable[[str], None]


@dataclass
class Plan:
    """What one install changes; written to the journal before each step."""

    id: str
    name: str
    staging: str  # folder names under var/bundles/
    folder: str  # under store/
    added_models: list[str] = field(default_factory=list)  # var/models entries it creates
    record: dict[str, Any] = field(default_factory=dict)  # the history line
    step: str = ""


def switch(site: Site, plan: Plan, on_step: Step | None = None) -> None:
    """Take the plan's steps in order, each journalled first; ``on_step`` is told each
    step's name once it is journalled and before it is taken."""

    def step(name: str) -> None:
        plan.step = name
        write_atomic(site.journal, json.dumps(asdict(plan)))
        if on_step is not None:
            on_step(name)

    step("store")
    site.store.mkdir(exist_ok=True)
    os.rename(site.root / plan.staging, site.store / plan.folder)
    step("link")
    if plan.added_models:
        site.models.mkdir(parents=True, exist_ok=True)
    for file in plan.added_models:
        replace_link(site.model_link(plan.name, file), site.models / file)
    step("switch")
    site.active.mkdir(exist_ok=True)
    replace_link(f"../{STORE}/{plan.folder}", site.active / plan.name)
    _forward(site, plan, step)


def _forward(site: Site, plan: Plan, step: Step) -> None:
    step("record")
    site.record(plan.record)
    step("clean")
    site.journal.unlink()
    site.sweep()


def recover(site: Site) -> Literal["forward", "back"] | None:
    """Finish or undo the install a crash interrupted (None: there was none), then
    sweep what no installed bundle uses."""
    plan = _read(site)
    outcome: Literal["forward", "back"] | None = None
    if plan is not None and _switched(site, plan):
        _forward(site, plan, lambda name: None)
        outcome = "forward"
    elif plan is not None:  # the sweep below takes the links it added, which now dangle
        shutil.rmtree(site.store / plan.folder, ignore_errors=True)
        shutil.rmtree(site.root / plan.staging, ignore_errors=True)
        outcome = "back"
    site.journal.unlink(missing_ok=True)
    site.sweep()
    return outcome


def _read(site: Site) -> Plan | None:
    """The journal's plan (None: no journal, or one whose write never finished)."""
    try:
        return Plan(**json.loads(site.journal.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _switched(site: Site, plan: Plan) -> bool:
    """Whether the plan's commit was taken: ``active/<name>`` points at its folder."""
    active = site.active / plan.name
    return active.is_symlink() and os.readlink(active) == f"../{STORE}/{plan.folder}"
