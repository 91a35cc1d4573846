// Package tlsutil holds the TLS plumbing shared by the control channel, the
// zone controller and their clients: self-signed certificates for a server
// that has none configured, SHA-256 certificate fingerprints, and client
// configurations that pin a fingerprint instead of trusting a CA.
//
// Every function is safe for concurrent use; returned values are owned by the
// caller.
package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// selfSignedValidity is how long a generated certificate is valid. Long,
// because operators pin its fingerprint; rotate by deleting the files.
const selfSignedValidity = 5 * 365 * 24 * time.Hour

// SelfSigned returns a new ECDSA P-256 self-signed server certificate valid
// for the given host names and IP addresses (localhost, 127.0.0.1 and ::1 are
// always included).
func SelfSigned(hosts ...string) (tls.Certificate, error) {
	certPEM, keyPEM, err := selfSignedPEM(hosts)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

func selfSignedPEM(hosts []string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "openmmr self-signed", Organization: []string{"openmmr"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(selfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range append([]string{"localhost", "127.0.0.1", "::1"}, hosts...) {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}

// LoadOrCreate loads cert.pem and key.pem from dir, creating a self-signed
// pair there (directory mode 0700, key mode 0600) when neither exists. created
// reports whether new files were written, so the caller can log the
// fingerprint for operators to pin.
func LoadOrCreate(dir string, hosts ...string) (cert tls.Certificate, created bool, err error) {
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_, errC := os.Stat(certFile)
	_, errK := os.Stat(keyFile)
	if errors.Is(errC, os.ErrNotExist) && errors.Is(errK, os.ErrNotExist) {
		certPEM, keyPEM, err := selfSignedPEM(hosts)
		if err != nil {
			return tls.Certificate{}, false, err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return tls.Certificate{}, false, fmt.Errorf("tlsutil: state directory: %w", err)
		}
		if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
			return tls.Certificate{}, false, err
		}
		if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
			return tls.Certificate{}, false, err
		}
		created = true
	}
	cert, err = tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, false, fmt.Errorf("tlsutil: load %s: %w", dir, err)
	}
	return cert, created, nil
}

// Fingerprint returns the SHA-256 of the certificate's leaf in DER form as
// lowercase hex, the form operators pin.
func Fingerprint(cert tls.Certificate) string {
	if len(cert.Certificate) == 0 {
		return ""
	}
	sum := sha256.Sum256(cert.Certificate[0])
	return hex.EncodeToString(sum[:])
}

// ErrFingerprint is returned by a pinned handshake whose peer certificate does
// not match the pin.
var ErrFingerprint = errors.New("tlsutil: peer certificate fingerprint does not match the pin")

// PinnedClientConfig returns a client configuration that accepts exactly the
// peer whose leaf certificate has the given SHA-256 fingerprint (hex, colons
// allowed), regardless of CA and host name. TLS 1.2 is the minimum.
func PinnedClientConfig(fingerprint string) (*tls.Config, error) {
	want, err := hex.DecodeString(strings.ReplaceAll(strings.ToLower(fingerprint), ":", ""))
	if err != nil || len(want) != sha256.Size {
		return nil, fmt.Errorf("tlsutil: fingerprint must be %d hex bytes", sha256.Size)
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by the pin check below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return ErrFingerprint
			}
			got := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if string(got[:]) != string(want) {
				return ErrFingerprint
			}
			return nil
		},
	}, nil
}

// ServerConfig returns a server configuration for cert with TLS 1.2 as the
// minimum (TLS 1.3 is preferred by crypto/tls when both sides offer it).
func ServerConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
}
