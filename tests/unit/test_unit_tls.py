"""clients/aws.SharedTlsSession: one TLS context per CA bundle, aiobotocore's own
connector wherever a client needs a context of its own."""

from __future__ import annotations

import shutil
import ssl
from typing import TYPE_CHECKING

from aiobotocore.httpsession import AIOHTTPSession
from botocore.httpsession import get_cert_path

from drs_poller.clients.aws import SharedTlsSession

if TYPE_CHECKING:
    from pathlib import Path


async def _context(session_cls: type, **options: object) -> object:
    session = session_cls(max_pool_connections=4, **options)
    connector = session._create_connector(None)
    try:
        return connector._ssl
    finally:
        await connector.close()


async def test_verifying_clients_share_one_context_per_bundle_as_aiobotocore_builds_it():
    first = await _context(SharedTlsSession, verify=True)
    second = await _context(SharedTlsSession, verify=True)
    theirs = await _context(AIOHTTPSession, verify=True)
    assert first is second
    assert isinstance(first, ssl.SSLContext)
    assert isinstance(theirs, ssl.SSLContext)
    assert (first.verify_mode, first.check_hostname) == (theirs.verify_mode, theirs.check_hostname)
    assert first.cert_store_stats() == theirs.cert_store_stats()
    assert first.verify_mode == ssl.CERT_REQUIRED


async def test_another_ca_bundle_has_a_context_of_its_own_shared_in_turn(tmp_path: Path):
    bundle = tmp_path / "corporate-ca.pem"  # AWS_CA_BUNDLE: verify is its path
    shutil.copy(get_cert_path(True), bundle)
    default = await _context(SharedTlsSession, verify=True)
    own = await _context(SharedTlsSession, verify=str(bundle))
    again = await _context(SharedTlsSession, verify=str(bundle))
    assert own is again
    assert own is not default
    assert isinstance(own, ssl.SSLContext)
    assert own.cert_store_stats() == default.cert_store_stats()


async def test_verification_off_keeps_aiobotocores_connector():
    assert await _context(SharedTlsSession, verify=False) is False
