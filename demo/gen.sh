#!/usr/bin/env bash
# Makes the demo's private PKI: a CA, the simulated WeChat Pay's server
# certificate for localhost, and the demo merchant's API client certificate
# (CommonName = the mch_id 10000100, as WeChat issues them), valid 20 years.
# These keys protect nothing: they exist so that the local demo can refund
# over mutual TLS like the real thing. Never use them for anything else.
set -euo pipefail
cd "$(dirname "$0")"
days=7300
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca_key.pem -out ca.pem \
	-days $days -subj "/CN=caddy-wxpay demo CA" -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout sim_key.pem -out sim.csr -subj "/CN=localhost"
openssl x509 -req -in sim.csr -CA ca.pem -CAkey ca_key.pem -CAcreateserial -out sim_cert.pem -days $days \
	-extfile <(printf "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature")
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout apiclient_key.pem -out client.csr -subj "/CN=10000100"
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca_key.pem -CAcreateserial -out apiclient_cert.pem -days $days \
	-extfile <(printf "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature")
rm -f sim.csr client.csr ca.srl ca_key.pem
