package wxpaysim

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
)

// TLSConfig returns a TLS server configuration for serving the simulator
// with serverCert: it asks clients for a certificate and verifies one when
// given (tls.VerifyClientCertIfGiven with Config.ClientCAs), so that the
// routes without a certificate keep working and /secapi/ calls carry the
// merchant's. When Config.ClientCAs is nil it only requests certificates
// (tls.RequestClientCert), and the simulator refuses every /secapi/ call.
// The simulator checks the certificate itself in any case (see
// Config.ClientCAs), so a server configured otherwise (e.g. by Caddy) is
// as safe.
func (s *Simulator) TLSConfig(serverCert tls.Certificate) *tls.Config {
	cfg := &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		MinVersion:   tls.VersionTLS12,
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    s.clientCAs,
	}
	if s.clientCAs == nil {
		// With no pool, VerifyClientCertIfGiven would verify against the
		// system's roots; the simulator refuses the call anyway.
		cfg.ClientAuth = tls.RequestClientCert
	}
	return cfg
}

// clientCertCN returns the CommonName of the request's client certificate
// once it verifies against Config.ClientCAs for client authentication, or
// why it does not. The chains the TLS server may have verified are not
// trusted on their own: the server may have used another pool.
func (s *Simulator) clientCertCN(r *http.Request) (cn, problem string) {
	switch {
	case s.clientCAs == nil:
		return "", "no ClientCAs configured"
	case r.TLS == nil:
		return "", "not over TLS"
	case len(r.TLS.PeerCertificates) == 0:
		return "", "no client certificate"
	}
	leaf := r.TLS.PeerCertificates[0]
	var intermediates *x509.CertPool
	if len(r.TLS.PeerCertificates) > 1 {
		intermediates = x509.NewCertPool()
		for _, c := range r.TLS.PeerCertificates[1:] {
			intermediates.AddCert(c)
		}
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         s.clientCAs,
		Intermediates: intermediates,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return "", "certificate " + leaf.Subject.String() + " does not verify: " + err.Error()
	}
	if leaf.Subject.CommonName == "" {
		return "", "certificate " + leaf.Subject.String() + " has no CommonName"
	}
	return leaf.Subject.CommonName, ""
}
