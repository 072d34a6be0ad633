"""One probe decides whether the Hugging Face hub is reachable, once per process. Without it, each dataset lm-eval
asks for costs five retries with backoff (about 30 s here) before saying what a 3-second probe already knew.
An unreachable hub switches this process to the libraries' offline mode, so cached data still loads."""

import os
import urllib.error
import urllib.request
from functools import lru_cache

PROBE_TIMEOUT_S = 3.0
_TRUE = ("1", "true", "yes", "on")


def offline_by_env() -> str | None:
    """The variable that already puts the libraries offline, if one does."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").lower() in _TRUE:
            return f"{var}=1"
    return None


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


@lru_cache(maxsize=1)
def unreachable_reason() -> str | None:
    """None when the hub answers (any HTTP status counts), else why not."""
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint() + "/api/whoami-v2", method="HEAD"),
                               timeout=PROBE_TIMEOUT_S).close()
        return None
    except urllib.error.HTTPError:
        return None  # it answered
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"a probe of {endpoint()} failed: {reason}"


def go_offline_if_unreachable() -> str | None:
    """Why the hub is out of reach (and this process now offline), or None when it can be used."""
    why = offline_by_env()
    if why:
        return why
    why = unreachable_reason()
    if why is None:
        return None
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    import sys

    # Both libraries read the variables when first imported; these are the flags they consult afterwards.
    hub_constants = sys.modules.get("huggingface_hub.constants")
    if hub_constants is not None:
        hub_constants.HF_HUB_OFFLINE = True
    datasets_config = sys.modules.get("datasets.config")
    if datasets_config is not None:
        datasets_config.HF_HUB_OFFLINE = True
        if hasattr(datasets_config, "HF_DATASETS_OFFLINE"):
            datasets_config.HF_DATASETS_OFFLINE = True
    return why
