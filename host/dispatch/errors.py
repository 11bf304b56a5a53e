"""How a plugin fails a stream besides trapping: quarantined, or a callout it waited on failed."""

from __future__ import annotations

from routeiq.runtime.errors import PluginError


class PluginQuarantined(PluginError):
    """The plugin is quarantined: it is skipped (fail_open) or its requests answered 503."""

    kind = "quarantined"


class CalloutFailed(PluginError):
    """A callout failed or timed out and the plugin left its stream paused."""

    kind = "callout_failed"


class CalloutTimedOut(CalloutFailed):
    kind = "callout_timeout"


