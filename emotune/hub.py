"""The Hugging Face Hub, asked cheaply before slow work: can it be reached at all, and is a model in the local
Hugging Face cache or on the Hub. A stage that loads from an unreachable Hub spends about a minute in
transformers' retries (issue 28: tokenize with `no-such-org/no-such-model` failed after ~50 s with a
traceback); these checks answer in milliseconds offline and in one request online. huggingface_hub is
imported only inside the functions (it is light, but `emotune check` needs it only for Hub models)."""
from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

TRUE = ("1", "true", "yes", "on")


class HubUnavailable(Exception):
    pass


def switched_off(*variables: str) -> str | None:
    """The first of the environment `variables` that switches the Hub off (HF_HUB_OFFLINE=1 ...), or None."""
    return next((v for v in variables if os.environ.get(v, "0").strip().lower() in TRUE), None)


def hub_reachable(timeout: float = 5.0, offline_variables=("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")) -> None:
    """Fail fast (instead of minutes of retries) when the Hub cannot be reached."""
    variable = switched_off(*offline_variables)
    if variable:
        raise HubUnavailable(f"{variable} is set")
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
    except OSError as exc:
        raise HubUnavailable(f"cannot connect to {url.hostname}: {exc}") from None


def model_problem(hub_id: str, revision: str | None) -> str | None:
    """Why Hub model `hub_id` at `revision` cannot load here, or None when it can (or may: a gated or
    rate-limited answer is left to the load, which says what it needs). In the local cache it always can."""
    from huggingface_hub import HfApi, constants, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    if isinstance(try_to_load_from_cache(hub_id, "config.json", revision=revision), str):
        return None
    try:
        hub_reachable(offline_variables=("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    except HubUnavailable as exc:
        return f"it is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and the Hub is unavailable ({exc})"
    try:
        HfApi().model_info(hub_id, revision=revision, timeout=10)
    except GatedRepoError:
        return None
    except RepositoryNotFoundError:
        return "the Hub has no such model (or it is private: set HF_TOKEN)"
    except RevisionNotFoundError:
        return f"the Hub has no revision {revision!r} of it"
    except (HfHubHTTPError, OSError):
        return None
    return None
