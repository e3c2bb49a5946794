package wxpaysim

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// v3SigningRequest is the JSON body of POST /sim/v3/signing.
type v3SigningRequest struct {
	MchID        string `json:"mch_id"`
	PublicKey    bool   `json:"public_key"`
	Certificates bool   `json:"certificates"`
}

// v3SignerRequest is the JSON body of POST /sim/v3/notification-signer.
type v3SignerRequest struct {
	MchID  string `json:"mch_id"`
	Signer string `json:"signer"` // "public_key", "certificate" or "" (random)
}

// v3RotateRequest is the JSON body of POST /sim/v3/rotate: a certificate
// and its key in PEM, or neither to have the simulator make one valid
// for a year from now.
type v3RotateRequest struct {
	MchID          string `json:"mch_id"`
	CertificatePEM string `json:"certificate_pem"`
	PrivateKeyPEM  string `json:"private_key_pem"`
}

// v3RetireRequest is the JSON body of POST /sim/v3/retire.
type v3RetireRequest struct {
	MchID    string `json:"mch_id"`
	SerialNo string `json:"serial_no"`
}

// serveV3Control answers the /sim/v3/ control routes:
//
//	POST /sim/v3/signing               {"mch_id", "public_key", "certificates"}: SetV3Signing
//	POST /sim/v3/notification-signer   {"mch_id", "signer"}: SetV3NotificationSigner
//	POST /sim/v3/rotate                {"mch_id", "certificate_pem"?, "private_key_pem"?}: RotatePlatformCertificate, answers {"serial_no"}
//	POST /sim/v3/retire                {"mch_id", "serial_no"}: RetirePlatformCertificate
//	GET  /sim/v3/certificate-downloads?mch_id=…: {"mch_id", "downloads"}
//
// It reports false for any other path.
func (s *Simulator) serveV3Control(w http.ResponseWriter, r *http.Request) bool {
	switch r.URL.Path {
	case "/sim/v3/signing":
		if !allowMethod(w, r, http.MethodPost) {
			return true
		}
		var req v3SigningRequest
		if err := decodeJSON(r, &req); err != nil {
			writeJSONError(w, http.StatusBadRequest, err)
			return true
		}
		writeV3ControlResult(w, s.SetV3Signing(req.MchID, req.PublicKey, req.Certificates), nil)
	case "/sim/v3/notification-signer":
		if !allowMethod(w, r, http.MethodPost) {
			return true
		}
		var req v3SignerRequest
		if err := decodeJSON(r, &req); err != nil {
			writeJSONError(w, http.StatusBadRequest, err)
			return true
		}
		writeV3ControlResult(w, s.SetV3NotificationSigner(req.MchID, req.Signer), nil)
	case "/sim/v3/rotate":
		if !allowMethod(w, r, http.MethodPost) {
			return true
		}
		var req v3RotateRequest
		if err := decodeJSON(r, &req); err != nil {
			writeJSONError(w, http.StatusBadRequest, err)
			return true
		}
		pc, err := s.rotationCertificate(req)
		if err != nil {
			writeJSONError(w, http.StatusBadRequest, err)
			return true
		}
		err = s.RotatePlatformCertificate(req.MchID, pc)
		writeV3ControlResult(w, err, map[string]string{"mch_id": req.MchID, "serial_no": CertificateSerial(pc.Certificate)})
	case "/sim/v3/retire":
		if !allowMethod(w, r, http.MethodPost) {
			return true
		}
		var req v3RetireRequest
		if err := decodeJSON(r, &req); err != nil {
			writeJSONError(w, http.StatusBadRequest, err)
			return true
		}
		writeV3ControlResult(w, s.RetirePlatformCertificate(req.MchID, req.SerialNo), nil)
	case "/sim/v3/certificate-downloads":
		if !allowMethod(w, r, http.MethodGet, http.MethodHead) {
			return true
		}
		mchID := r.URL.Query().Get("mch_id")
		if mchID == "" {
			writeJSONError(w, http.StatusBadRequest, errors.New(`give the "mch_id" query parameter`))
			return true
		}
		writeJSON(w, http.StatusOK, map[string]any{"mch_id": mchID, "downloads": s.CertificateDownloads(mchID)})
	default:
		return false
	}
	return true
}

// rotationCertificate reads the certificate of a rotation request, or
// makes one valid for a year from the simulator's clock.
func (s *Simulator) rotationCertificate(req v3RotateRequest) (PlatformCertificate, error) {
	if req.CertificatePEM == "" && req.PrivateKeyPEM == "" {
		now := s.now()
		return GeneratePlatformCertificate(now.Add(-time.Minute), now.AddDate(1, 0, 0))
	}
	cb, _ := pem.Decode([]byte(req.CertificatePEM))
	if cb == nil || cb.Type != "CERTIFICATE" {
		return PlatformCertificate{}, errors.New("certificate_pem holds no PEM CERTIFICATE")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return PlatformCertificate{}, fmt.Errorf("certificate_pem: %w", err)
	}
	kb, _ := pem.Decode([]byte(req.PrivateKeyPEM))
	if kb == nil {
		return PlatformCertificate{}, errors.New("private_key_pem holds no PEM block")
	}
	var key *rsa.PrivateKey
	switch kb.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(kb.Bytes)
	case "PRIVATE KEY":
		var k any
		k, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
		if err == nil {
			var ok bool
			if key, ok = k.(*rsa.PrivateKey); !ok {
				err = errors.New("not an RSA key")
			}
		}
	default:
		err = fmt.Errorf("PEM block %q is not a private key", kb.Type)
	}
	if err != nil {
		return PlatformCertificate{}, fmt.Errorf("private_key_pem: %w", err) // never quotes the key
	}
	return PlatformCertificate{Certificate: cert, Key: key}, nil
}

// writeV3ControlResult answers a /sim/v3/ control: 204 (or 200 with ok)
// on success, else an error status from err's kind.
func writeV3ControlResult(w http.ResponseWriter, err error, ok any) {
	switch {
	case err == nil && ok == nil:
		w.WriteHeader(http.StatusNoContent)
	case err == nil:
		writeJSON(w, http.StatusOK, ok)
	case errors.Is(err, ErrUnknownMerchant):
		writeJSONError(w, http.StatusNotFound, err)
	case errors.Is(err, ErrNoV3), errors.Is(err, ErrLimit):
		writeJSONError(w, http.StatusConflict, err)
	default:
		writeJSONError(w, http.StatusBadRequest, err)
	}
}
