"""Secret derivation against RFC 5802 / RFC 7677 SCRAM and RFC 2617 / RFC 7616 / RFC 8760 digest vectors."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from unirtc.directory.secrets import (
    derive_digest,
    derive_scram,
    digest_ha1,
    prepare_password,
    verify_scram_password,
)

CORPORA = Path(__file__).parent.parent / "corpora"
SCRAM = json.loads((CORPORA / "scram" / "scram_vectors.json").read_text())["vectors"]
DIGEST = json.loads((CORPORA / "sip_digest" / "digest_vectors.json").read_text())["vectors"]
HASHES = {"MD5": "md5", "SHA-256": "sha256"}

def _attributes(message: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in message.split(","))

class ScramDerivationTests(SynchronousTestCase):
    def _check_vector(self, name: str) -> None:
        vector = SCRAM[name]
        secret = derive_scram(
            vector["hash"], vector["password"], base64.b64decode(vector["salt_b64"]), vector["iterations"]
        )
        client_first_bare = vector["client_first"].split(",", 2)[2]
        client_final = vector["client_final"]
        without_proof = client_final[: client_final.index(",p=")]
        auth_message = f"{client_first_bare},{vector['server_first']},{without_proof}".encode()

        proof = base64.b64decode(_attributes(client_final)["p"])
        signature = hmac.new(secret.stored_key, auth_message, vector["hash"]).digest()
        client_key = bytes(a ^ b for a, b in zip(proof, signature))
        self.assertEqual(hashlib.new(vector["hash"], client_key).digest(), secret.stored_key)
        server_signature = hmac.new(secret.server_key, auth_message, vector["hash"]).digest()
        self.assertEqual("v=" + base64.b64encode(server_signature).decode(), vector["server_final"])

    def test_rfc5802Sha1StoredKeysVerifyTheExample(self) -> None:
        """
        If the RFC 5802 §5 password and salt are derived, the stored keys verify the example's
        client proof and reproduce its server signature.
        """
        self._check_vector("rfc5802_scram_sha1")

    def test_rfc7677Sha256StoredKeysVerifyTheExample(self) -> None:
        """
        If the RFC 7677 §3 password and salt are derived, the stored keys verify the example's
        client proof and reproduce its server signature.
        """
        self._check_vector("rfc7677_scram_sha256")

    def test_passwordVerification(self) -> None:
        """
        If a plaintext password (SASL PLAIN, HTTP Basic) is checked against the stored secret,
        the right password matches and any other does not.
        """
        secret = derive_scram("sha256", "pencil")
        self.assertTrue(verify_scram_password(secret, "pencil"))
        self.assertFalse(verify_scram_password(secret, "pencil "))
        self.assertFalse(verify_scram_password(secret, ""))

    def test_freshSaltEachTime(self) -> None:
        """
        If the same password is derived twice, the salts and stored keys differ.
        """
        first, second = derive_scram("sha1", "pencil"), derive_scram("sha1", "pencil")
        self.assertNotEqual(first.salt, second.salt)
        self.assertNotEqual(first.stored_key, second.stored_key)
        self.assertEqual(len(first.salt), 16)

    def test_iterationFloor(self) -> None:
        """
        If fewer than 4096 iterations are asked for, derivation refuses (RFC 7677 §4).
        """
        self.assertRaises(ValueError, derive_scram, "sha256", "pencil", None, 4095)
        self.assertRaises(ValueError, derive_scram, "md5", "pencil")

class DigestDerivationTests(SynchronousTestCase):
    def test_vectorsWithQopAuth(self) -> None:
        """
        If HA1 is derived for each MD5 and SHA-256 vector with qop=auth, the RFC 2617 / RFC 7616
        response formula over it gives the vector's expected response.
        """
        checked = 0
        for name, vector in DIGEST.items():
            if vector["algorithm"] not in HASHES or vector.get("qop") != "auth":
                continue
            h = HASHES[vector["algorithm"]]
            ha1 = digest_ha1(vector["algorithm"], vector["username"], vector["realm"], vector["password"])
            if "HA1" in vector:
                self.assertEqual(ha1, vector["HA1"], name)
            ha2 = hashlib.new(h, f"{vector['method']}:{vector['uri']}".encode()).hexdigest()
            response = hashlib.new(
                h, f"{ha1}:{vector['nonce']}:{vector['nc']}:{vector['cnonce']}:auth:{ha2}".encode()
            ).hexdigest()
            self.assertEqual(response, vector["expected_response"], name)
            checked += 1
        self.assertGreaterEqual(checked, 4)

    def test_bothUsernamesBothAlgorithms(self) -> None:
        """
        If an account's digest secrets are derived, there is one HA1 per digest username
        (``user`` and ``user@domain``) and algorithm, with the account domain as realm.
        """
        secrets = derive_digest("joe", "falcot.com", "pencil")
        self.assertEqual(
            sorted((s.username, s.algorithm) for s in secrets),
            [("joe", "MD5"), ("joe", "SHA-256"), ("joe@falcot.com", "MD5"), ("joe@falcot.com", "SHA-256")],
        )
        md5 = next(s for s in secrets if s.username == "joe" and s.algorithm == "MD5")
        self.assertEqual(md5.realm, "falcot.com")
        self.assertEqual(md5.ha1, hashlib.md5(b"joe:falcot.com:pencil").hexdigest())

    def test_unknownAlgorithm(self) -> None:
        """
        If an algorithm the directory does not store is asked for, derivation refuses.
        """
        self.assertRaises(ValueError, digest_ha1, "SHA-1", "a", "b", "c")

class PreparePasswordTests(SynchronousTestCase):
    def test_opaqueString(self) -> None:
        """
        If a password has non-ASCII spaces they map to ASCII space and the result is NFC;
        a control character is refused.
        """
        self.assertEqual(prepare_password("a\u00a0b"), "a b")
        self.assertEqual(prepare_password("e\u0301"), "\u00e9")
        self.assertRaises(ValueError, prepare_password, "a\x07b")
        self.assertRaises(ValueError, prepare_password, "")
