#!/usr/bin/env python3
"""Generates the test-only keys, certificates and protocol vectors of the
wxpayv3 package, with Python's `cryptography` (version 48) and the `openssl`
command line, independently of the Go code under test.

Run from this directory:  python3 gen_vectors.py
It rewrites every file it makes: new random keys, and so new signatures and
ciphertexts. Commit its whole output together.

Outputs (all test-only; none of these keys is or was ever used anywhere real):
  merchant_key.pem          merchant private key, PKCS#8 ("PRIVATE KEY"), RSA-2048
  merchant_key_pkcs1.pem    the same key, PKCS#1 ("RSA PRIVATE KEY")
  merchant_cert.pem         self-signed merchant certificate for that key
  wechat_pubkey_key.pem     "WeChat Pay public key" private half (plays WeChat)
  wechat_pubkey.pem         its public half, PKIX ("PUBLIC KEY"), as the merchant platform hands it out
  wechat_pubkey_pkcs1.pem   the same public key, PKCS#1 ("RSA PUBLIC KEY")
  platform_key.pem, platform_cert.pem          platform certificate A (current)
  platform2_key.pem, platform2_cert.pem        platform certificate B (newer, for rotation)
  platform_old_key.pem, platform_old_cert.pem  an expired platform certificate; its serial's first byte is 0x0A
  rogue_key.pem, rogue_cert.pem                a key and certificate WeChat never listed
  small_key.pem             an RSA-1024 key (refused: too short)
  ec_key.pem                a P-256 key, PKCS#8 (refused: not RSA)
  vectors.json              the protocol vectors (see the keys of the file)
"""
import base64
import datetime
import json
import os
import subprocess
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

HERE = os.path.dirname(os.path.abspath(__file__))

MCHID = "1900009191"
APPID = "wxd678efh567hg6787"
PUB_KEY_ID = "PUB_KEY_ID_0119000091912025010100000000000001"  # 34 digits, as real ids have
APIV3_KEY = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"  # 32 ASCII bytes
NOW = 1767225600  # 2026-01-01T00:00:00Z: the time every vector is made at


def write(name, data):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)


def pkcs8(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def pkcs1(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def new_rsa(bits=2048):
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def cert(key, cn, serial, not_before, not_after):
    name = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "caddy-wxpay test only"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])
    return (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(not_before).not_valid_after(not_after)
            .sign(key, hashes.SHA256()))


def pem_cert(c):
    return c.public_bytes(serialization.Encoding.PEM)


def utc(*a):
    return datetime.datetime(*a, tzinfo=datetime.timezone.utc)


def sign(key, message):
    """SHA256withRSA, PKCS#1 v1.5, base64: deterministic for a key and message."""
    return base64.b64encode(key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def openssl_sign(key_file, message):
    """The same signature made by the openssl CLI, as a cross-check."""
    with tempfile.NamedTemporaryFile() as m:
        m.write(message.encode())
        m.flush()
        out = subprocess.run(["openssl", "dgst", "-sha256", "-sign", os.path.join(HERE, key_file), m.name],
                             check=True, capture_output=True).stdout
    return base64.b64encode(out).decode()


def openssl_serial(cert_file):
    out = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", os.path.join(HERE, cert_file)],
                         check=True, capture_output=True, text=True).stdout.strip()
    assert out.startswith("serial=")
    return out[len("serial="):]


def message(*parts):
    return "".join(p + "\n" for p in parts)


def gcm(key, nonce, ad, plaintext):
    ct = AESGCM(key.encode()).encrypt(nonce.encode(), plaintext.encode(), ad.encode() if ad else None)
    return base64.b64encode(ct).decode()


def compact(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def main():
    # The public AES-GCM check of wechatpay-go's utils/aes_test.go (a 16-byte
    # key, so AES-128): make sure this library agrees before using it.
    assert AESGCM(b"testAPIv3Key0000").decrypt(
        b"wCq51qZv4Yfg", base64.b64decode("FsdXzxryWfKwvLJKf8LG/ToRPTRh8RN9wROC"),
        b"Dl56FrqWQJF1t9LtC3vEUsniZKvbqdR8") == b"Hello World"

    merchant = new_rsa()
    write("merchant_key.pem", pkcs8(merchant))
    write("merchant_key_pkcs1.pem", pkcs1(merchant))
    merchant_cert = cert(merchant, MCHID + " merchant (test)", 0x3775B6A45ACD588826D15E583A95F5DD1A2B3C4D,
                         utc(2025, 1, 1), utc(2030, 1, 1))
    write("merchant_cert.pem", pem_cert(merchant_cert))

    wechat = new_rsa()
    write("wechat_pubkey_key.pem", pkcs8(wechat))
    write("wechat_pubkey.pem", wechat.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    write("wechat_pubkey_pkcs1.pem", wechat.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.PKCS1))

    platform = new_rsa()
    platform_cert = cert(platform, "Tenpay.com platform A (test)", 0x45A1C0FFEE0D15EA5E0000000000000000000001,
                         utc(2025, 1, 1), utc(2030, 1, 1))
    write("platform_key.pem", pkcs8(platform))
    write("platform_cert.pem", pem_cert(platform_cert))

    platform2 = new_rsa()
    platform2_cert = cert(platform2, "Tenpay.com platform B (test)", 0x6D2AC0FFEE0D15EA5E0000000000000000000002,
                          utc(2025, 6, 1), utc(2030, 6, 1))
    write("platform2_key.pem", pkcs8(platform2))
    write("platform2_cert.pem", pem_cert(platform2_cert))

    old = new_rsa()
    old_cert = cert(old, "Tenpay.com platform old (test)", 0x0ABCDEF0123456789ABCDEF0123456789ABCDEF0,
                    utc(2020, 1, 1), utc(2021, 1, 1))
    write("platform_old_key.pem", pkcs8(old))
    write("platform_old_cert.pem", pem_cert(old_cert))

    rogue = new_rsa()
    rogue_cert = cert(rogue, "not WeChat (test)", 0x7E57C0FFEE0D15EA5E0000000000000000000BAD,
                      utc(2025, 1, 1), utc(2030, 1, 1))
    write("rogue_key.pem", pkcs8(rogue))
    write("rogue_cert.pem", pem_cert(rogue_cert))

    write("small_key.pem", pkcs8(new_rsa(1024)))
    write("ec_key.pem", pkcs8(ec.generate_private_key(ec.SECP256R1())))

    def serial(c):
        return format(c.serial_number, "X")  # uppercase hex, no padding (as WeChat shows serials)

    merchant_serial = serial(merchant_cert)
    assert openssl_serial("merchant_cert.pem") == merchant_serial
    # openssl pads to whole bytes: "0ABC…" where WeChat and %X print "ABC…".
    old_serial_openssl = openssl_serial("platform_old_cert.pem")

    v = {
        "_comment": "Generated by gen_vectors.py with Python cryptography %s and %s; see its docstring."
                    % (__import__("cryptography").__version__,
                       subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()),
        "now": NOW,
        "mchid": MCHID,
        "appid": APPID,
        "apiv3_key": APIV3_KEY,
        "public_key_id": PUB_KEY_ID,
        "serials": {
            "merchant": merchant_serial,
            "platform": serial(platform_cert),
            "platform2": serial(platform2_cert),
            "platform_old": serial(old_cert),
            "platform_old_openssl": old_serial_openssl,
            "rogue": serial(rogue_cert),
        },
    }

    # Request signatures (Authorization), merchant key; each cross-checked
    # with `openssl dgst -sha256 -sign`.
    reqs = []
    for name, method, path, ts, nonce, body in [
        ("GET with query, empty body", "GET",
         "/v3/pay/transactions/out-trade-no/1217752501201407033233368018?mchid=" + MCHID,
         1554208460, "593BEC0C930BF1AFEB40B4A08C8FB242", ""),
        ("POST jsapi prepay, UTF-8 body", "POST", "/v3/pay/transactions/jsapi", NOW, "ZxKpq7mPEGSU3vyb4t6pXyLYjPaXFfAi",
         compact({"appid": APPID, "mchid": MCHID, "description": "Image形象店-深圳腾大-QQ公仔",
                  "out_trade_no": "1217752501201407033233368018", "notify_url": "https://www.weixin.qq.com/wxpay/pay.php",
                  "amount": {"total": 100, "currency": "CNY"}, "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}})),
        ("POST close", "POST", "/v3/pay/transactions/out-trade-no/1217752501201407033233368018/close", NOW + 1,
         "Ck0aTv9xFQJ2wYp3mN8rS5dE7gH1jL4q", compact({"mchid": MCHID})),
    ]:
        msg = message(method, path, str(ts), nonce, body)
        sig = sign(merchant, msg)
        assert sig == openssl_sign("merchant_key.pem", msg), name
        reqs.append({
            "name": name, "method": method, "path_and_query": path, "timestamp": ts, "nonce": nonce,
            "body": body, "message": msg, "signature": sig,
            "authorization": 'WECHATPAY2-SHA256-RSA2048 mchid="%s",nonce_str="%s",timestamp="%d",serial_no="%s",signature="%s"'
                             % (MCHID, nonce, ts, merchant_serial, sig),
        })
    v["request_signatures"] = reqs

    # Answer signatures over TIMESTAMP\nNONCE\nBODY\n, made by "WeChat".
    answers = []
    for name, key, key_file, ser, ts, nonce, body in [
        ("public key, prepay answer", wechat, "wechat_pubkey_key.pem", PUB_KEY_ID, NOW, "f2d6c6bb0f3e4a1c9a5e7d8b4c3a2b1e",
         '{"prepay_id":"wx26112221580621e9b071c00d9e093b0000"}'),
        ("public key, 204 empty body", wechat, "wechat_pubkey_key.pem", PUB_KEY_ID, NOW + 2, "0a1b2c3d4e5f60718293a4b5c6d7e8f9", ""),
        ("platform certificate, UTF-8 error body", platform, "platform_key.pem", serial(platform_cert), NOW - 60,
         "9c3a5f1e7b2d4c6e8a0b1d3f5e7a9c1b",
         compact({"code": "ORDER_NOT_EXIST", "message": "订单不存在"})),
    ]:
        msg = message(str(ts), nonce, body)
        sig = sign(key, msg)
        assert sig == openssl_sign(key_file, msg), name
        answers.append({"name": name, "serial": ser, "timestamp": ts, "nonce": nonce, "body": body,
                        "message": msg, "signature": sig})
    v["answer_signatures"] = answers

    # AEAD_AES_256_GCM with the APIv3 key.
    aead = []
    for name, nonce, ad, pt in [
        ("transaction", "fdasflkja484", "transaction", compact({"out_trade_no": "1217752501201407033233368018", "trade_state": "SUCCESS"})),
        ("empty associated data", "aJ2kLm3nOp4q", "", "Hello 微信支付"),
        ("certificate", "4de73afd28b6", "certificate", "-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n"),
    ]:
        aead.append({"name": name, "nonce": nonce, "associated_data": ad, "plaintext": pt,
                     "ciphertext": gcm(APIV3_KEY, nonce, ad, pt)})
    v["aead"] = aead

    # Signed notifications (public key mode), raw bodies as WeChat would send them.
    notes = []
    tx = {
        "appid": APPID, "mchid": MCHID, "out_trade_no": "1217752501201407033233368018",
        "transaction_id": "4200000000202601010000000001", "trade_type": "JSAPI", "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功", "bank_type": "OTHERS", "attach": "", "success_time": "2026-01-01T08:00:00+08:00",
        "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
        "amount": {"total": 100, "payer_total": 100, "currency": "CNY", "payer_currency": "CNY"},
    }
    refund = {
        "mchid": MCHID, "out_trade_no": "1217752501201407033233368018", "transaction_id": "4200000000202601010000000001",
        "out_refund_no": "R1217752501201407033233368018", "refund_id": "50000000382019052709732678859",
        "refund_status": "SUCCESS", "success_time": "2026-01-01T09:00:00+08:00",
        "user_received_account": "支付用户零钱",
        "amount": {"total": 100, "refund": 40, "payer_total": 100, "payer_refund": 40},
    }
    for name, event, summary, ad, nonce, res_nonce, ts, pt, original in [
        ("transaction success", "TRANSACTION.SUCCESS", "支付成功", "transaction", "b3a1c5d7e9f0a2b4c6d8e0f1a3b5c7d9",
         "vYbz3LmNq8Rk", NOW, compact(tx), "transaction"),
        ("refund success", "REFUND.SUCCESS", "退款成功", "refund", "c4b2d6e8f0a1b3c5d7e9f1a2b4c6d8e0",
         "Qm7pT2xW9kZs", NOW + 30, compact(refund), "refund"),
    ]:
        body = json.dumps({
            "id": "EV-2018022511223320873", "create_time": "2026-01-01T08:00:00+08:00",
            "resource_type": "encrypt-resource", "event_type": event, "summary": summary,
            "resource": {"original_type": original, "algorithm": "AEAD_AES_256_GCM",
                         "ciphertext": gcm(APIV3_KEY, res_nonce, ad, pt), "associated_data": ad, "nonce": res_nonce},
        }, ensure_ascii=False, indent=2) + "\n"  # pretty-printed: the raw bytes matter, not the JSON
        msg = message(str(ts), nonce, body)
        notes.append({
            "name": name, "event_type": event, "body": body, "plaintext": pt,
            "headers": {"Wechatpay-Timestamp": str(ts), "Wechatpay-Nonce": nonce,
                        "Wechatpay-Signature": sign(wechat, msg), "Wechatpay-Serial": PUB_KEY_ID,
                        "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048"},
        })
    v["notifications"] = notes

    # Client pay parameters (merchant key).
    jsapi_msg = message(APPID, "1414561699", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS", "prepay_id=wx201410272009395522657a690389285100")
    v["jsapi"] = {"appid": APPID, "prepay_id": "wx201410272009395522657a690389285100", "timestamp": 1414561699,
                  "nonce": "5K8264ILTKCH16CQ2502SI8ZNMTM67VS", "message": jsapi_msg, "pay_sign": sign(merchant, jsapi_msg)}
    assert v["jsapi"]["pay_sign"] == openssl_sign("merchant_key.pem", jsapi_msg)
    app_msg = message(APPID, "1414561699", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS", "wx201410272009395522657a690389285100")
    v["app"] = {"appid": APPID, "mchid": MCHID, "prepay_id": "wx201410272009395522657a690389285100", "timestamp": 1414561699,
                "nonce": "5K8264ILTKCH16CQ2502SI8ZNMTM67VS", "message": app_msg, "sign": sign(merchant, app_msg)}
    assert v["app"]["sign"] == openssl_sign("merchant_key.pem", app_msg)

    # RSA-OAEP (SHA-1, MGF1-SHA-1, no label) to the merchant's public key:
    # what WeChat sends to a merchant; the merchant decrypts with its key.
    oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    v["oaep"] = [{"plaintext": pt, "ciphertext": base64.b64encode(merchant.public_key().encrypt(pt.encode(), oaep)).decode()}
                 for pt in ["张三", "13800138000", ""]]

    # A /v3/certificates answer listing platform certificates A and B,
    # signed with A's key.
    data = []
    for c, nonce in [(platform_cert, "43061a5e6b2f"), (platform2_cert, "8f0c2d4e6a1b")]:
        data.append({
            "serial_no": serial(c),
            "effective_time": c.not_valid_before_utc.astimezone(datetime.timezone(datetime.timedelta(hours=8))).isoformat(),
            "expire_time": c.not_valid_after_utc.astimezone(datetime.timezone(datetime.timedelta(hours=8))).isoformat(),
            "encrypt_certificate": {"algorithm": "AEAD_AES_256_GCM", "nonce": nonce, "associated_data": "certificate",
                                    "ciphertext": gcm(APIV3_KEY, nonce, "certificate", pem_cert(c).decode())},
        })
    body = compact({"data": data})
    ts, nonce = NOW, "e61b8a1b9d2c4f3e5a7b9c1d3e5f7a9b"
    msg = message(str(ts), nonce, body)
    v["certificates_answer"] = {"body": body, "timestamp": ts, "nonce": nonce, "serial": serial(platform_cert),
                                "signature": sign(platform, msg)}
    # The same body signed by a key WeChat never listed, under its own serial.
    v["certificates_answer_rogue"] = {"body": body, "timestamp": ts, "nonce": nonce, "serial": serial(rogue_cert),
                                      "signature": sign(rogue, msg)}

    write("vectors.json", (json.dumps(v, ensure_ascii=False, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
