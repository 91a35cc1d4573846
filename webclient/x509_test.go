package webclient

import "crypto/x509"

func x509Parse(der []byte) (*x509.Certificate, error) { return x509.ParseCertificate(der) }
