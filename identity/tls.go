package identity

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// CAFile is the cluster authority's certificate in a TLS directory;
// CAKeyFile its key, which only cmd/certs needs (nodes never read it).
const (
	CAFile    = "ca.crt"
	CAKeyFile = "ca.key"
)

// Identity is one party's credentials: its certificate and key, and the
// cluster authority it trusts for everyone else.
type Identity struct {
	Peer  Peer // what its own certificate names
	cert  tls.Certificate
	roots *x509.CertPool
}

func newIdentity(p Peer, certPEM, keyPEM, caPEM []byte) (*Identity, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("identity: %v: %w", p, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("identity: %v: %w", p, err)
	}
	named, err := PeerOf(leaf)
	if err != nil {
		return nil, err
	}
	if named != p {
		return nil, fmt.Errorf("identity: the certificate names %v, not %v", named, p)
	}
	ca, err := parseCertPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("identity: %s: %w", CAFile, err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	// Refuse at load, not at the first handshake, a certificate its own
	// cluster would refuse.
	usage := x509.ExtKeyUsageClientAuth
	if p.Role == RoleNode {
		usage = x509.ExtKeyUsageServerAuth
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return nil, fmt.Errorf("identity: the %v certificate is not valid under this cluster's %s: %w", p, CAFile, err)
	}
	cert.Leaf = leaf
	return &Identity{Peer: p, cert: cert, roots: roots}, nil
}

// Load reads p's credentials from a TLS directory written by cmd/certs:
// ca.crt, and <base>.crt and <base>.key where base is p.FileBase() (node-2,
// client, admin). A key file that group or others may read is refused.
func Load(dir string, p Peer) (*Identity, error) {
	base := filepath.Join(dir, p.FileBase())
	caPEM, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	certPEM, err := os.ReadFile(base + ".crt")
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	keyFile := base + ".key"
	st, err := os.Stat(keyFile)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("identity: %s is readable by others (mode %v): chmod 600 it", keyFile, st.Mode().Perm())
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	id, err := newIdentity(p, certPEM, keyPEM, caPEM)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, dir)
	}
	return id, nil
}

// ServerConfig is what a node listens with: TLS 1.3 only, and a client
// certificate signed by the cluster's authority and naming a role is
// required. Which role the peer has is read afterwards (PeerOfConn).
func (id *Identity) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    id.roots,
		VerifyConnection: func(cs tls.ConnectionState) error {
			// Called during the handshake, after the chain is verified: a
			// certificate of this cluster that names no role is refused here.
			if len(cs.PeerCertificates) == 0 {
				return errors.New("identity: the client sent no certificate")
			}
			_, err := PeerOf(cs.PeerCertificates[0])
			return err
		},
	}
}

// NodeConfig is what one node dials node `node` with: the server must prove
// it is that node of this cluster (and, as usual, the host dialled).
func (id *Identity) NodeConfig(node int32) *tls.Config {
	return id.dialConfig(func(p Peer) error {
		if p != Node(node) {
			return fmt.Errorf("identity: dialled node %d, but the server's certificate is %v's", node, p)
		}
		return nil
	})
}

// ClientConfig is what a client (or admin, or a node acting as a client)
// dials any node of the cluster with.
func (id *Identity) ClientConfig() *tls.Config {
	return id.dialConfig(func(p Peer) error {
		if !p.IsNode() {
			return fmt.Errorf("identity: the server's certificate is %v's, not a node's", p)
		}
		return nil
	})
}

func (id *Identity) dialConfig(check func(Peer) error) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.cert},
		RootCAs:      id.roots,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("identity: the server sent no certificate")
			}
			p, err := PeerOf(cs.PeerCertificates[0])
			if err != nil {
				return err
			}
			return check(p)
		},
	}
}
