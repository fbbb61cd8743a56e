#!/usr/bin/env python3
"""Verify a tenantvault audit log: python3 verify.py VKEY CHECKPOINT LOG...

LOG... are the segment files in name order, or one export from record 0.
Standard library only; uses the `cryptography` package for Ed25519 when
it is installed (unless TENANTVAULT_PURE_ED25519 is set)."""
import base64, binascii, hashlib, json, os, re, sys

def sha256(b): return hashlib.sha256(b).digest()
def leaf_hash(leaf): return sha256(b"\x00" + leaf)
def node_hash(l, r): return sha256(b"\x01" + l + r)

def mth(hashes):  # RFC 9162 2.1.1, over leaf hashes
    if not hashes: return sha256(b"")
    if len(hashes) == 1: return hashes[0]
    k = 1 << ((len(hashes) - 1).bit_length() - 1)  # largest power of 2 < n
    return node_hash(mth(hashes[:k]), mth(hashes[k:]))

class Fail(Exception): pass

# --- Ed25519 (RFC 8032): `cryptography` if present, else RFC 8032 section 6.
P, L = 2**255 - 19, 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
def _add(a, b):
    A, B = (a[1] - a[0]) * (b[1] - b[0]) % P, (a[1] + a[0]) * (b[1] + b[0]) % P
    C, E = 2 * a[3] * b[3] * D % P, 2 * a[2] * b[2] % P
    return ((B - A) * (E - C), (E + C) * (B + A), (E - C) * (E + C), (B - A) * (B + A))
def _mul(s, p):
    q = (0, 1, 1, 0)
    while s:
        if s & 1: q = _add(q, p)
        p, s = _add(p, p), s >> 1
    return q
def _point(b):  # decompress, or None
    y = int.from_bytes(b, "little"); sign, y = y >> 255, y & ((1 << 255) - 1)
    if y >= P: return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P: x = x * pow(2, (P - 1) // 4, P) % P
    if (x * x - x2) % P or (x == 0 and sign): return None
    if x & 1 != sign: x = P - x
    return (x, y, 1, x * y % P)
_G = _point((4 * pow(5, P - 2, P) % P).to_bytes(32, "little"))
def _same(a, b): return (a[0] * b[2] - b[0] * a[2]) % P == 0 and (a[1] * b[2] - b[1] * a[2]) % P == 0
def ed25519_verify_pure(pub, msg, sig):
    A, R, s = _point(pub), _point(sig[:32]), int.from_bytes(sig[32:], "little")
    if A is None or R is None or s >= L: return False
    h = int.from_bytes(hashlib.sha512(sig[:32] + pub + msg).digest(), "little") % L
    return _same(_mul(s, _G), _add(R, _mul(h, A)))
try:
    if os.environ.get("TENANTVAULT_PURE_ED25519"): raise ImportError
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    def ed25519_verify(pub, msg, sig):
        try: Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg); return True
        except Exception: return False
except ImportError:
    ed25519_verify = ed25519_verify_pure

# --- Signed notes (c2sp.org/signed-note) by the log's key.
def parse_vkey(vkey):
    name, khash, key = vkey.split("+", 2)  # base64 may hold '+': split twice only
    key = base64.b64decode(key, validate=True)
    if len(key) != 33 or key[0] != 1: raise Fail("not an Ed25519 verifier key")
    if sha256(name.encode() + b"\n" + key)[:4].hex() != khash: raise Fail("key hash does not match the key")
    return name, bytes.fromhex(khash), key[1:]

def open_note(note, vkey):  # returns the text; every line by the log's key must verify
    name, khash, pub = parse_vkey(vkey)
    s = note.decode("utf-8")  # raises on bad UTF-8
    if any(c < " " and c != "\n" for c in s): raise Fail("control character in note")
    text, sep, sigs = note.rpartition(b"\n\n")
    if not sep or not sigs.endswith(b"\n"): raise Fail("not a signed note")
    text += b"\n"
    ok, lines = False, sigs.decode().split("\n")[:-1]
    if len(lines) > 100: raise Fail("too many signatures")
    for line in lines:
        if not line.startswith("\u2014 "): raise Fail("malformed signature line")
        signer, _, b64 = line[2:].partition(" ")
        try: sig = base64.b64decode(b64, validate=True)
        except binascii.Error: raise Fail("malformed signature line")
        if not signer or len(sig) < 5: raise Fail("malformed signature line")
        if signer == name and sig[:4] == khash:  # the log's key: must verify
            if not ed25519_verify(pub, text, sig[4:]): raise Fail("a signature by the log's key does not verify")
            ok = True
    if not ok: raise Fail("no signature by the log's key")
    return text

def open_checkpoint(note, vkey):
    text = open_note(note, vkey).decode()
    lines = text.split("\n")[:-1]
    if len(lines) < 3 or "" in lines[3:]: raise Fail("not a checkpoint")
    origin, size, root = lines[:3]
    if origin != vkey.split("+")[0]: raise Fail("origin is not the key name")
    if not re.fullmatch(r"0|[1-9][0-9]*", size): raise Fail("bad size")
    raw = base64.b64decode(root, validate=True)
    if len(raw) != 32 or base64.b64encode(raw).decode() != root: raise Fail("bad root")
    return int(size), raw

# --- Records: the few members a verifier reads, read unambiguously.
class Int(int): pass  # remembers that the JSON number was an integer
def strict_json(b):
    def no_dups(pairs):
        d = dict(pairs)
        if len(d) != len(pairs): raise Fail("a member name twice")
        return d
    def no_const(c): raise Fail("not JSON: " + c)
    v = json.loads(b.decode("utf-8"), object_pairs_hook=no_dups, parse_constant=no_const,
                   parse_int=lambda s: Int(s) if not s.startswith("-") else float(s))
    def walk(x, depth):  # a lone surrogate (\ud800) does not encode: refuse it
        if isinstance(x, str): x.encode("utf-8")
        elif depth > 32 and isinstance(x, (dict, list)): raise Fail("nested too deep")
        elif isinstance(x, dict): [walk(k, depth) or walk(y, depth + 1) for k, y in x.items()]
        elif isinstance(x, list): [walk(y, depth + 1) for y in x]
    try: walk(v, 1)
    except UnicodeEncodeError: raise Fail("a lone surrogate")
    if not isinstance(v, dict): raise Fail("not a JSON object")
    return v

def check_receipt(i, rec, vkey):
    details = rec.get("details")
    if not isinstance(details, dict) or details.get("receipt", "") == "": return 0
    if not isinstance(details["receipt"], str): raise Fail("receipt is not a string")
    if rec.get("action") != "tenant.shred" or rec.get("outcome") != "ok": raise Fail("receipt outside a shred record")
    head, _, body = open_note(details["receipt"].encode(), vkey).decode().partition("\n")
    if head != "tenantvault shred-receipt v1" or body.find("\n") != len(body) - 1: raise Fail("not a shred receipt")
    r = strict_json(body[:-1].encode())
    if not {"tenant", "key_ids_destroyed", "audit_index"} <= r.keys(): raise Fail("receipt lacks a member")
    if type(r.get("audit_index")) is not Int or r["audit_index"] != i: raise Fail("receipt signed for another record")
    if r.get("tenant") != rec.get("tenant"): raise Fail("receipt names another tenant")
    if r.get("key_ids_destroyed") != rec.get("key_ids", []): raise Fail("receipt names other key ids")
    return 1

def main(vkey, cpfile, *logs):
    try: size, root = open_checkpoint(open(cpfile, "rb").read(), vkey)
    except (Fail, ValueError) as e: sys.exit(f"FAIL checkpoint: {e}")
    lines = b"".join(open(f, "rb").read() for f in logs).split(b"\n")
    torn = lines.pop()  # bytes after the last newline: not a record (yet)
    hashes, prev, receipts = [], "", 0
    for i, line in enumerate(lines):
        try:
            rec = strict_json(line)
            if type(rec.get("index")) is not Int or rec["index"] != i: raise Fail(f"index is not {i}")
            if rec.get("prev") != prev: raise Fail(f"prev is not the leaf hash of record {i-1}")
            receipts += check_receipt(i, rec, vkey)
        except (Fail, ValueError) as e: sys.exit(f"FAIL record {i}: {e}")
        hashes.append(leaf_hash(line))
        prev = hashes[-1].hex()
    if len(hashes) < size: sys.exit(f"FAIL record {len(hashes)}: the log ends there; the checkpoint signed {size}")
    if mth(hashes[:size]) != root: sys.exit(f"FAIL record {size-1}: records 0..{size-1} do not hash to the signed root")
    print(f"ok: {size} records verified, {len(hashes) - size} past the checkpoint NOT verified, "
          f"{len(torn)} bytes of a torn last line, {receipts} receipts verified")

if __name__ == "__main__":
    main(*sys.argv[1:])
