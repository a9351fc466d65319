"""Which addresses the server offers as WebRTC ICE candidates.

aiortc gathers host candidates on every interface except loopback (aioice skips
127.0.0.1), and adds a public STUN server unless told otherwise. talkface never uses STUN
(``RTCConfiguration(iceServers=[])``: the server answers on the addresses it has, and it
must work offline), and it adds 127.0.0.1 when the server listens on a loopback address
or the machine has no other address, so that a browser on the same machine (or a test in
a loopback-only network namespace) can connect.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

_LOOPBACK = "127.0.0.1"
_installed: dict[str, bool] = {}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is on this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def install_candidate_policy(*, listen_host: str) -> None:
    """Make aioice offer 127.0.0.1 when it is useful (see the module docstring).

    aioice has no option for this, so its host-address function is wrapped, once per
    process; the wrapper only adds loopback, it never hides an interface.
    """
    import aioice.ice

    _installed["loopback"] = is_loopback(listen_host)
    if getattr(aioice.ice.get_host_addresses, "_talkface_wrapped", False):
        return
    original: Callable[..., list[str]] = aioice.ice.get_host_addresses

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        addresses = original(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
        if use_ipv4 and _LOOPBACK not in addresses and (
            _installed.get("loopback") or not addresses
        ):
            addresses.append(_LOOPBACK)
        return addresses

    get_host_addresses._talkface_wrapped = True  # type: ignore[attr-defined]
    aioice.ice.get_host_addresses = get_host_addresses
    logger.debug("ICE host candidates: loopback added when listening on %s", listen_host)


def candidate_addresses(sdp: str) -> list[str]:
    """The connection addresses of the ``a=candidate`` lines of an SDP (for checks)."""
    addresses = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split()
            if len(parts) > 4:
                addresses.append(parts[4])
    return addresses
