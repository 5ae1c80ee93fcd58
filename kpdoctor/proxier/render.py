"""Mode dispatch for the reference proxier: one `ProxierInput`, the rules of its configured mode.

The nftables and IPVS renderers are imported lazily so that rendering iptables
rules (and `kpdoctor --help`) never pays for modules it does not use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from kpdoctor.cluster.kube_proxy_node import PROXY_MODES
from kpdoctor.errors import InputError
from kpdoctor.proxier.context import ProxierInput

MODES = PROXY_MODES
_LAZY: dict[str, tuple[str, str]] = {
    "nftables": ("kpdoctor.proxier.nftables", "render_nftables"),
    "ipvs": ("kpdoctor.proxier.ipvs", "render_ipvs"),
}


def renderer_for(mode: str) -> Callable[[ProxierInput], str]:
    """The render function of `mode`; InputError for unknown or not-yet-available modes."""
    if mode == "iptables":
        from kpdoctor.proxier.iptables import render_iptables

        return render_iptables
    if mode not in _LAZY:
        raise InputError(f"unknown proxy mode {mode!r} (expected one of: {', '.join(MODES)})")
    module_name, func_name = _LAZY[mode]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise InputError(f"mode {mode} not supported yet") from None
    func = getattr(module, func_name, None)
    if func is None:
        raise InputError(f"mode {mode} not supported yet")
    renderer: Callable[[ProxierInput], str] = func
    return renderer


def render(inp: ProxierInput) -> str:
    """The complete ruleset real kube-proxy leaves on `inp`'s node in `inp.mode`."""
    return renderer_for(inp.mode)(inp)
