#!/usr/bin/env python3
"""Writes the `{cipher}` test vectors in vectors/ from the keys in keys/.

Every ciphertext is produced independently of Almanac's code: key derivation (PBKDF2), AES-CBC
and RSA with the `openssl` command-line tool, AES-GCM and Almanac's scrypt/HKDF with Python's
`cryptography` package. Each case is NAME.cipher (the value as written in a config file) and
NAME.expect.json: {"keyring": which test keyring decrypts it, "plain": the text} or
{"keyring": ..., "invalid": true}. The keyrings are defined in tests/unit/cipher/test_cipher.c.

Run from this directory: python3 make-vectors.py  (it rewrites vectors/ entirely).
"""
import base64
import json
import os
import shutil
import subprocess
import tempfile

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

HERE = os.path.dirname(os.path.abspath(__file__))
KEYS = os.path.join(HERE, "keys")
OUT = os.path.join(HERE, "vectors")
TMP = tempfile.mkdtemp()


def secret(name):
    with open(os.path.join(KEYS, name), "rb") as f:
        return f.read().rstrip(b"\r\n").decode()


def run(*args, data=None):
    return subprocess.run(args, input=data, check=True, capture_output=True).stdout


def pbkdf2(password, salt_hex="deadbeef"):
    return run("openssl", "kdf", "-binary", "-keylen", "32", "-kdfopt", "digest:SHA1",
               "-kdfopt", "pass:" + password, "-kdfopt", "hexsalt:" + salt_hex,
               "-kdfopt", "iter:1024", "PBKDF2")


def cbc(key, plain, iv=None, nopad=False):
    iv = iv or os.urandom(16)
    args = ["openssl", "enc", "-aes-256-cbc", "-K", key.hex(), "-iv", iv.hex()]
    if nopad:
        args.append("-nopad")
    return iv + run(*args, data=plain)


def gcm16(key, plain):
    iv = os.urandom(16)
    return iv + AESGCM(key).encrypt(iv, plain, None)


def rsa_block(pem, data, padding):
    src = os.path.join(TMP, "in.bin")
    with open(src, "wb") as f:
        f.write(data)
    opts = ["-pkeyopt", "rsa_padding_mode:pkcs1"]
    if padding == "oaep":
        opts = ["-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha1",
                "-pkeyopt", "rsa_mgf1_md:sha1"]
    return run("openssl", "pkeyutl", "-encrypt", "-inkey", os.path.join(KEYS, pem),
               "-in", src, *opts)


def spring_rsa(pem, plain, padding="pkcs1", mode="cbc", salt_hex="deadbeef"):
    random = os.urandom(16)
    block = rsa_block(pem, random, padding)
    key = pbkdf2(random.hex(), salt_hex)
    aes = gcm16(key, plain) if mode == "gcm" else cbc(key, plain)
    return len(block).to_bytes(2, "big") + block + aes


def almanac_key(text):
    master = Scrypt(salt=b"almanac.alm1", length=32, n=1 << 15, r=8, p=1).derive(text.encode())
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"almanac alm1 aes-256-gcm").derive(master)


def almanac(key, plain, version=1):
    nonce = os.urandom(12)
    head = bytes([version])
    sealed = AESGCM(key).encrypt(nonce, plain, head)
    return "alm1:" + base64.urlsafe_b64encode(head + nonce + sealed).decode().rstrip("=")


def b64(data):
    return base64.b64encode(data).decode()


def write(name, value, keyring, plain=None):
    with open(os.path.join(OUT, name + ".cipher"), "w") as f:
        f.write(value)
    expect = {"keyring": keyring}
    if plain is None:
        expect["invalid"] = True
    else:
        expect["plain"] = plain
    with open(os.path.join(OUT, name + ".expect.json"), "w") as f:
        json.dump(expect, f, ensure_ascii=False, indent=2)
        f.write("\n")


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    sym = secret("symmetric.key")
    key = pbkdf2(sym)
    texts = {
        "word": "s3cr3t",
        "unicode": "pässwörd ☃ 密码",
        "empty": "",
        "block": "0123456789abcdef",  # a whole block: the padding is a block of its own
        "multiline": "line one\nline two\n",
        "long": "x" * 1000,
    }
    for name, text in texts.items():
        write("spring-sym-" + name, "{cipher}" + cbc(key, text.encode()).hex(), "default", text)
        for pad in ("pkcs1", "oaep"):
            for mode in ("cbc", "gcm"):
                value = b64(spring_rsa("rsa.pem", text.encode(), pad, mode))
                write("spring-rsa-%s-%s-%s" % (pad, mode, name), "{cipher}" + value, "default",
                      text)
    akey = almanac_key(sym)
    for name, text in texts.items():
        write("almanac-" + name, "{cipher}" + almanac(akey, text.encode()), "default", text)

    # Spring's own quirks that must keep working.
    good = cbc(key, b"upper")
    write("spring-sym-uppercase-hex", "{cipher}" + good.hex().upper(), "default", "upper")
    unpadded = b64(spring_rsa("rsa.pem", b"no padding chars")).rstrip("=")
    write("spring-rsa-unpadded-base64", "{cipher}" + unpadded, "default", "no padding chars")
    write("spring-sym-plain-escape", "{cipher}{plain}" + cbc(key, b"escaped").hex(), "default",
          "escaped")
    write("spring-sym-custom-salt", "{cipher}" + cbc(pbkdf2(sym, "cafebabe"), b"salted").hex(),
          "salt", "salted")
    write("spring-rsa-custom-salt",
          "{cipher}" + b64(spring_rsa("rsa.pem", b"rsa salted", salt_hex="cafebabe")), "salt",
          "rsa salted")
    write("spring-rsa-pkcs1-keyfile",
          "{cipher}" + b64(spring_rsa("rsa-pkcs1.pem", b"traditional pem")), "pkcs1",
          "traditional pem")

    # Rotation: named keys from a directory.
    old, new = secret("rotation/old.key"), secret("rotation/new.key")
    write("rotation-old", "{cipher}{key:old}" + cbc(pbkdf2(old), b"old value").hex(), "rotation",
          "old value")
    write("rotation-new", "{cipher}{key:new}" + almanac(almanac_key(new), b"new value"),
          "rotation", "new value")
    write("rotation-legacy-rsa",
          "{cipher}{key:legacy}" + b64(spring_rsa("rotation/legacy.pem", b"legacy value")),
          "rotation", "legacy value")
    write("rotation-secret-prefix-ignored",
          "{cipher}{key:old}{secret:changeit}" + cbc(pbkdf2(old), b"with secret").hex(),
          "rotation", "with secret")
    write("rotation-unknown-name", "{cipher}{key:missing}" + cbc(pbkdf2(old), b"x").hex(),
          "rotation")
    write("rotation-bad-name", "{cipher}{key:../old}" + cbc(pbkdf2(old), b"x").hex(), "rotation")
    write("rotation-no-name", "{cipher}" + cbc(pbkdf2(old), b"needs a name").hex(), "rotation")
    write("rotation-wrong-named-key", "{cipher}{key:new}" + cbc(pbkdf2(old), b"x").hex(),
          "rotation")

    # Damage: every one of these must fail cleanly.
    hexed = cbc(key, b"damaged value").hex()
    write("bad-sym-truncated-hex", "{cipher}" + hexed[:-2], "default")
    write("bad-sym-odd-length", "{cipher}" + hexed[:-1], "default")
    write("bad-sym-iv-only", "{cipher}" + hexed[:32], "default")
    write("bad-sym-not-hex", "{cipher}" + hexed[:10] + "zz" + hexed[12:], "default")
    write("bad-sym-extra-block", "{cipher}" + hexed + "00" * 16, "default")
    for name, last in (("05", b"\x04\x05\x05\x05\x05"), ("00", b"\x00"), ("17", b"\x11"),
                       ("mixed", b"\x03\x02\x03")):
        block = b"A" * (16 - len(last)) + last
        write("bad-sym-padding-" + name, "{cipher}" + cbc(key, block, nopad=True).hex(), "default")
    write("bad-sym-wrong-key", "{cipher}" + cbc(pbkdf2(secret("other.key")), b"x").hex(), "default")
    write("bad-sym-wrong-salt", "{cipher}" + cbc(pbkdf2(sym, "cafebabe"), b"x").hex(), "default")
    write("bad-sym-no-key", "{cipher}" + hexed, "none")
    write("bad-sym-rsa-only-keyring", "{cipher}" + hexed, "rsa")

    rsa = spring_rsa("rsa.pem", b"damaged rsa value")
    write("bad-rsa-base64", "{cipher}" + "!!" + b64(rsa)[2:], "default")
    stripped = b64(rsa).rstrip("=")
    write("bad-rsa-base64-length", "{cipher}" + stripped[:len(stripped) // 4 * 4] + "A",
          "default")
    write("bad-rsa-truncated", "{cipher}" + b64(rsa[:-5]), "default")
    write("bad-rsa-block-only", "{cipher}" + b64(rsa[:2 + 256]), "default")
    write("bad-rsa-length-prefix", "{cipher}" + b64(b"\x00\x80" + rsa[2:]), "default")
    write("bad-rsa-huge-length", "{cipher}" + b64(b"\xff\xff" + rsa[2:]), "default")
    write("bad-rsa-tiny", "{cipher}" + b64(b"\x00"), "default")
    flipped = bytearray(spring_rsa("rsa.pem", b"tampered", "oaep", "gcm"))
    flipped[-1] ^= 1
    write("bad-rsa-gcm-tag", "{cipher}" + b64(bytes(flipped)), "default")
    flipped = bytearray(rsa)
    flipped[100] ^= 0x40
    write("bad-rsa-block-flipped", "{cipher}" + b64(bytes(flipped)), "default")
    write("bad-rsa-wrong-key", "{cipher}" + b64(spring_rsa("other-rsa.pem", b"x")), "default")
    write("bad-rsa-public-only", "{cipher}" + b64(rsa), "public")
    write("bad-rsa-no-key", "{cipher}" + b64(rsa), "none")

    alm = almanac(akey, b"damaged almanac value")
    raw = bytearray(base64.urlsafe_b64decode(alm[5:] + "=" * (-len(alm[5:]) % 4)))
    for i in (0, 1, 13, len(raw) - 1):
        damaged = bytearray(raw)
        damaged[i] ^= 1
        encoded = base64.urlsafe_b64encode(bytes(damaged)).decode().rstrip("=")
        write("bad-almanac-flip-%d" % i, "{cipher}alm1:" + encoded, "default")
    write("bad-almanac-version-2", "{cipher}" + almanac(akey, b"v2", version=2), "default")
    write("bad-almanac-truncated", "{cipher}" + alm[:-4], "default")
    write("bad-almanac-short", "{cipher}alm1:AQ", "default")
    write("bad-almanac-empty", "{cipher}alm1:", "default")
    write("bad-almanac-padding-char", "{cipher}" + alm + "=", "default")
    write("bad-almanac-std-alphabet", "{cipher}" + alm.replace("-", "+").replace("_", "/")
          + ("" if ("-" in alm or "_" in alm) else "+"), "default")
    write("bad-almanac-wrong-key", "{cipher}" + almanac(almanac_key("other"), b"x"), "default")
    write("bad-almanac-no-key", "{cipher}" + alm, "none")
    write("bad-empty", "{cipher}", "default")
    write("bad-unknown-prefix-only", "{cipher}{nocolon}abc", "default")
    write("bad-not-cipher", "plain value", "default")


if __name__ == "__main__":
    try:
        main()
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
