package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"time"
)

// Validity of what a CA makes. Long, because replacing certificates is an
// operator's deliberate act (README "Security"), not a routine.
const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 5 * 365 * 24 * time.Hour
	// backdate lets a certificate be used at once by a host whose clock
	// is a little behind the one that made it.
	backdate = time.Hour
)

// CA is a cluster's certificate authority: its certificate and key.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	der  []byte
}

// NewCA makes a fresh authority (ECDSA P-256). cmd/cluster makes one in
// memory at every start; cmd/certs writes one to files.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("identity: CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"twopc"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // it signs leaves only, never another authority
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("identity: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{cert: cert, key: key, der: der}, nil
}

// LoadCA reads an authority written by cmd/certs (ca.crt and ca.key), to
// issue more certificates with it.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, errors.New("identity: the certificate is not a CA's")
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, errors.New("identity: CA key: no PEM block")
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("identity: CA key: %w", err)
	}
	return &CA{cert: cert, key: key, der: cert.Raw}, nil
}

// CertPEM is the authority's certificate (ca.crt).
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.der})
}

// KeyPEM is the authority's private key (ca.key): whoever holds it can make
// any identity of the cluster.
func (ca *CA) KeyPEM() ([]byte, error) { return keyPEM(ca.key) }

// Pool is a certificate pool holding only this authority.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// IssuePEM makes a certificate and key for p, as PEM. A node's hosts (host
// names or IP addresses) go into its certificate's DNS and IP names, which
// a dialer checks against the address it dialled; clients and admins have
// no host.
func (ca *CA) IssuePEM(p Peer, hosts []string) (certPEM, keyPEMOut []byte, err error) {
	switch p.Role {
	case RoleNode:
		if p.Node < 0 {
			return nil, nil, fmt.Errorf("identity: node id %d is negative", p.Node)
		}
		if len(hosts) == 0 {
			return nil, nil, fmt.Errorf("identity: %v needs at least one host name or IP", p)
		}
	case RoleClient, RoleAdmin:
		if len(hosts) > 0 {
			return nil, nil, fmt.Errorf("identity: a %v certificate names no host", p.Role)
		}
	default:
		return nil, nil, fmt.Errorf("identity: unknown role %v", p.Role)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("identity: key for %v: %w", p, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "twopc " + p.String(), Organization: []string{"twopc"}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// Only a node serves: a client or admin certificate cannot pass for
		// a node even to a dialer that forgot to check the role.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{p.URI()},
	}
	if p.Role == RoleNode {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else if h != "" {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("identity: certificate for %v: %w", p, err)
	}
	kp, err := keyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), kp, nil
}

// Issue makes p's identity in memory (cmd/cluster, tests).
func (ca *CA) Issue(p Peer, hosts ...string) (*Identity, error) {
	c, k, err := ca.IssuePEM(p, hosts)
	if err != nil {
		return nil, err
	}
	return newIdentity(p, c, k, ca.CertPEM())
}

func keyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("identity: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("identity: serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil // never zero
}

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("identity: no PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}
