"""The profile's ``sqlflow_metrics`` setting: where to export at the end of a run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from dbt_common.exceptions import DbtConfigError

DEFAULT_JOB = "dbt"
DEFAULT_TIMEOUT_SECONDS = 10.0
_KEYS = ("textfile", "pushgateway", "job", "timeout_seconds")


@dataclass(frozen=True)
class MetricsSettings:
    """Automatic export targets, from ``sqlflow_metrics`` in profiles.yml.

    Attributes:
        textfile: Folder for ``dbt_sqlflow.prom`` (node_exporter's textfile collector).
        pushgateway: Pushgateway URL, e.g. ``http://127.0.0.1:9091``.
        job: The Pushgateway ``job`` grouping key.
        timeout_seconds: Timeout of a push.
    """

    textfile: str | None = None
    pushgateway: str | None = None
    job: str = DEFAULT_JOB
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS

    @property
    def enabled(self) -> bool:
        """Whether there is anything to export to."""
        return bool(self.textfile or self.pushgateway)

    @classmethod
    def parse(cls, raw: Any) -> MetricsSettings:
        """Validate a ``sqlflow_metrics`` value; report every problem in one error.

        Args:
            raw: The profile value: None or a mapping with ``textfile``, ``pushgateway``,
                ``job``, ``timeout_seconds``.

        Raises:
            DbtConfigError: Naming each bad key, its value, what is allowed and the fix.
        """
        if raw is None:
            return cls()
        if isinstance(raw, MetricsSettings):
            return raw
        if not isinstance(raw, dict):
            raise DbtConfigError(
                f"sqlflow_metrics: got {raw!r}; expected a mapping such as "
                "{textfile: /var/lib/node_exporter} or "
                "{pushgateway: 'http://127.0.0.1:9091', job: dbt}"
            )
        problems = [
            f"unknown key {key!r} (allowed: {', '.join(_KEYS)})" for key in raw if key not in _KEYS
        ]
        textfile = raw.get("textfile")
        if textfile is not None and (not isinstance(textfile, str) or not textfile.strip()):
            problems.append(f"textfile is {textfile!r}; expected a folder path")
        gateway = raw.get("pushgateway")
        if gateway is not None:
            parsed = urlparse(gateway) if isinstance(gateway, str) else None
            if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
                problems.append(
                    f"pushgateway is {gateway!r}; expected an http(s) URL such as "
                    "'http://127.0.0.1:9091'"
                )
        job = raw.get("job", DEFAULT_JOB)
        if not isinstance(job, str) or not job or "/" in job:
            problems.append(f"job is {job!r}; expected a non-empty name without '/'")
        timeout = raw.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            problems.append(f"timeout_seconds is {timeout!r}; expected a positive number")
        if problems:
            raise DbtConfigError("sqlflow_metrics: " + "; ".join(problems))
        return cls(
            textfile=textfile,
            pushgateway=gateway,
            job=job,
            timeout_seconds=float(timeout),
        )
