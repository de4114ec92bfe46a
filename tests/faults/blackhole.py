"""Silently drop a TCP port's packets on loopback with nftables (issue 14, requirement 2).

Unlike :class:`tests.faults.proxy.Proxy`, nothing answers and nothing is refused: a request is
sent and never acknowledged, exactly as when a failover moves the address, a security group
changes or a NAT entry dies. Only the kernel's retransmissions and our timeouts end the wait.

Each hole is its own nftables table, ``inet resque_faultnet_<port>``, deleted by :meth:`heal`
and by the fixture at the end of the test; the shared Redis port is refused outright.
"""
from __future__ import annotations

import shutil
import subprocess
from typing import List, Optional

import pytest

NFT = shutil.which("nft") or "/usr/sbin/nft"
#: Never: the shared Redis of every helper and test run.
SHARED_PORTS = (6379,)


class Blackhole:
    """Drop packets to and from 127.0.0.1:``port``, except those of ``spare`` (another loopback
    address a replica connects from, so replication survives what clients lose). With
    ``replies_only``, requests still reach the server and run; only what it sends back is lost."""

    def __init__(self, port: int, spare: Optional[str] = None, replies_only: bool = False) -> None:
        assert port not in SHARED_PORTS, f"refusing to blackhole the shared port {port}"
        self.port = port
        self.spare = spare
        self.replies_only = replies_only
        self.table = f"resque_faultnet_{port}"
        self.active = False

    def drop(self) -> None:
        to_spare = f"ip saddr != {self.spare} " if self.spare else ""
        from_spare = f"ip daddr != {self.spare} " if self.spare else ""
        _nft(f"""table inet {self.table} {{
  chain output {{
    type filter hook output priority 0; policy accept;
    {"" if self.replies_only else f'oifname "lo" {to_spare}tcp dport {self.port} drop'}
    oifname "lo" {from_spare}tcp sport {self.port} drop
  }}
}}""")
        self.active = True

    def heal(self) -> None:
        if self.active:
            if _nft(f"list table inet {self.table}", check=False):  # not deleted by hand meanwhile
                _nft(f"delete table inet {self.table}")
            self.active = False


def _nft(script: str, check: bool = True) -> bool:
    proc = subprocess.run([NFT, "-f", "-"], input=script, text=True, capture_output=True)
    if proc.returncode != 0 and check:
        pytest.fail(f"nft failed ({proc.stderr.strip()}); the blackhole tests need root and "
                    "nftables (bash .ci/services installs it)", pytrace=False)
    return proc.returncode == 0


@pytest.fixture
def blackhole():
    """Factory: ``blackhole(port, spare=None, replies_only=False)``; every hole is healed after the test."""
    holes: List[Blackhole] = []
    if not shutil.which("nft") and not shutil.which(NFT):
        pytest.fail("nft is not installed: apt-get install nftables (bash .ci/services does)", pytrace=False)

    def make(port: int, spare: Optional[str] = None, replies_only: bool = False) -> Blackhole:
        hole = Blackhole(port, spare, replies_only)
        holes.append(hole)
        return hole

    yield make
    for hole in holes:
        hole.heal()
