#!/usr/bin/env bash
# Makes the demo's APIv3 keys, for the simulated WeChat Pay and the demo
# merchant 10000100: the merchant's API key and certificate
# (apiclient_key.pem, apiclient_cert.pem: RSA-2048, as WeChat issues them),
# the WeChat Pay public key (pub_key.pem) with the private half the
# simulator signs with, and one platform certificate with its key, valid
# 20 years. These keys protect nothing: they exist so that the local demo
# can speak APIv3 like the real thing. Never use them for anything else.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p v3
cd v3
days=7300
openssl req -x509 -newkey rsa:2048 -nodes -keyout apiclient_key.pem -out apiclient_cert.pem -days $days \
	-subj "/CN=10000100/O=caddy-wxpay demo merchant" -addext "keyUsage=critical,digitalSignature"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sim_pub_key_private.pem
openssl pkey -in sim_pub_key_private.pem -pubout -out pub_key.pem
openssl req -x509 -newkey rsa:2048 -nodes -keyout sim_platform_key.pem -out sim_platform_cert.pem -days $days \
	-subj "/CN=Tenpay.com Root CA demo platform certificate/O=caddy-wxpay demo" -addext "keyUsage=critical,digitalSignature"
