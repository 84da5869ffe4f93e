"""The lexflow tags and description section of a model version.

Tag protocol on a model version (so a version is never "complete" with another run's tags):
  begin:    run_id=<this run> first (claims the version), then delete every other lexflow.* tag,
            status=running; re-read and claim again if another run's write landed in between
  complete: if run_id is still this run: all tags of this run (never run_id itself, which would
            steal the version back), the description section; re-read, delete tags no run of ours
            wrote and rewrite changed ones; then status=complete (or partial, when some latents
            failed) last; re-read once more: if another run claimed the version meanwhile, put
            status back to running (that run will write its own end state) and report the takeover
  fail:     if run_id is still this run: delete latent tags, status=failed, lexflow.error
MLflow has no compare-and-set on tags; the re-reads close the windows a real race opens
(tests/integration/test_crash.py races two processes and two writers against a real server).
"""

from __future__ import annotations

from typing import Any

from lexflow import names
from lexflow.errors import TrackingError
from lexflow.record import merge_description, status_section
from lexflow.signals import deferred
from lexflow.tracking.registry import client

# What MLflow's SQL store answers when two writers set or delete the same tag at once (it upserts
# by select-then-insert): PostgreSQL, SQLite and MySQL wordings, and SQLAlchemy's stale delete.
_STORE_RACE = ("duplicate key", "UniqueViolation", "UNIQUE constraint failed", "Duplicate entry",
               "were matched", "StaleDataError")


def _retry_store_race(call: Any, attempts: int = 4) -> None:
    """Run ``call``; retry it when it lost a race inside the store (the retry sees the other
    writer's row and updates or deletes it)."""
    import time

    for attempt in range(attempts):
        try:
            call()
            return
        except Exception as exc:  # MlflowException/RestException carrying the store's error
            if attempt == attempts - 1 or not any(m in str(exc) for m in _STORE_RACE):
                raise
            time.sleep(0.05 * (attempt + 1))


class VersionTags:
    """Writes the lexflow tags and description section of one model version."""

    def __init__(self, name: str, version: str, run_id: str) -> None:
        self.name, self.version, self.run_id = name, version, run_id
        self.c = client()
        self.began = False  # begin() was called (its first write may be all that happened)

    # Each store call runs whole (signals.deferred): a SIGTERM lands between two calls, never
    # inside one, where it could leave the store's connection holding a lock.
    def _current(self) -> dict[str, str]:
        with deferred():
            return dict(self.c.get_model_version(self.name, self.version).tags)

    def _set(self, key: str, value: str) -> None:
        with deferred():
            _retry_store_race(lambda: self.c.set_model_version_tag(self.name, self.version, key,
                                                                   value))

    def _delete(self, keys: list[str]) -> None:
        for key in keys:
            with deferred():
                _retry_store_race(lambda key=key: self.c.delete_model_version_tag(
                    self.name, self.version, key))

    def _describe(self, section: str) -> None:
        with deferred():
            mv = self.c.get_model_version(self.name, self.version)
            self.c.update_model_version(
                self.name, self.version, description=merge_description(mv.description, section)
            )

    def begin(self, explainer: str) -> None:
        # The status goes to running before anything else changes: a begin interrupted at any
        # point never leaves the previous run's `complete` over this run's id or tags.
        self.began = True
        self._set(names.TAG_STATUS, names.STATUS_RUNNING)
        for _ in range(3):
            self._set(names.TAG_RUN_ID, self.run_id)
            self._delete([k for k in self._current()
                          if k.startswith(names.TAG_PREFIX) and k != names.TAG_RUN_ID])
            self._set(names.TAG_STATUS, names.STATUS_RUNNING)
            self._set(names.TAG_EXPLAINER, explainer)
            now = self._current()
            if (now.get(names.TAG_RUN_ID) != self.run_id
                    or now.get(names.TAG_STATUS) == names.STATUS_RUNNING):
                break  # ours and clean, or a newer run has claimed it (it then owns the tags)
        self._describe(status_section(f"lexflow: explanation running (run {self.run_id})."))

    def _taken_over(self) -> TrackingError:
        return TrackingError(
            f"Another lexflow run took over {self.name} version {self.version} while this one "
            f"({self.run_id}) was running; not overwriting its tags."
        )

    def complete(self, tags: dict[str, str], description: str,
                 status: str = names.STATUS_COMPLETE) -> None:
        if self._current().get(names.TAG_RUN_ID) != self.run_id:
            raise self._taken_over()
        want = {k: v for k, v in tags.items() if k != names.TAG_RUN_ID}
        for key, value in want.items():
            self._set(key, value)
        self._describe(description)
        keep = set(want) | {names.TAG_RUN_ID, names.TAG_STATUS}
        now = self._current()
        if now.get(names.TAG_RUN_ID) != self.run_id:
            raise self._taken_over()
        self._delete([k for k in now if k.startswith(names.TAG_PREFIX) and k not in keep])
        for key, value in want.items():
            if now.get(key) != value:
                self._set(key, value)
        self._set(names.TAG_STATUS, status)
        now = self._current()
        if now.get(names.TAG_RUN_ID) != self.run_id:
            # Our status write may have landed after the other run's begin: give the version
            # back to that run's own protocol (it writes its terminal status itself).
            if now.get(names.TAG_STATUS) == status and self._run_active(now.get(names.TAG_RUN_ID)):
                self._set(names.TAG_STATUS, names.STATUS_RUNNING)
            raise self._taken_over()

    def _run_active(self, run_id: str | None) -> bool:
        if not run_id:
            return True
        try:
            return str(self.c.get_run(run_id).info.status) == "RUNNING"
        except Exception:  # unknown run: assume it still works on the version
            return True

    def fail(self, message: str) -> None:
        current = self._current()
        owner = current.get(names.TAG_RUN_ID)
        if owner not in (None, self.run_id):
            # Another run's id: it owns the version, unless this run's begin was cut short right
            # after setting `running` over a run that has ended (then the failure is ours).
            interrupted = (self.began and current.get(names.TAG_STATUS) == names.STATUS_RUNNING
                           and not self._run_active(owner))
            if not interrupted:
                return
        self._delete([k for k in current if k.startswith(names.TAG_LATENT_PREFIX)
                      or k in (names.TAG_EXPLAINABLE_FRACTION, names.TAG_COVERAGE)])
        self._set(names.TAG_RUN_ID, self.run_id)
        self._set(names.TAG_ERROR, message[: names.TAG_VALUE_MAX])
        self._describe(status_section(f"lexflow: explanation failed (run {self.run_id}): {message}"))
        self._set(names.TAG_STATUS, names.STATUS_FAILED)



def version_tags_of(name: str, version: str) -> dict[str, str]:
    return dict(client().get_model_version(name, version).tags)


