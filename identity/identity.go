// Package identity says who is speaking on a twopc connection. A cluster
// has its own certificate authority; it signs one certificate per node
// (naming the node id, and its host names or IPs), a client certificate and
// an admin certificate. The role is written in the certificate as a URI
// subject alternative name — twopc:node:<id>, twopc:client, twopc:admin —
// so a verified peer certificate answers "who is this" with no lookup.
//
// Every connection is mutual TLS 1.3: a node accepts only peers whose
// certificate the cluster's CA signed, and a dialer accepts only the node it
// meant to reach.
package identity

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Role is what a certificate allows.
type Role int

const (
	// RoleNode is a member of the cluster: it may deliver protocol
	// messages, as the node its certificate names and no other.
	RoleNode Role = iota + 1
	// RoleClient may submit transactions and read, never speak as a node.
	RoleClient
	// RoleAdmin may do everything a client may, and the operator's actions
	// (status, in doubt, resolve, faults) as they are put on the wire.
	RoleAdmin
)

func (r Role) String() string {
	switch r {
	case RoleNode:
		return "node"
	case RoleClient:
		return "client"
	case RoleAdmin:
		return "admin"
	}
	return fmt.Sprintf("role(%d)", int(r))
}

// Peer is the identity a certificate proves: a role, and for a node its id.
type Peer struct {
	Role Role
	Node int32 // meaningful only for RoleNode
}

// Node is node id's identity; Client and Admin are the two others.
func Node(id int32) Peer { return Peer{Role: RoleNode, Node: id} }

var (
	Client = Peer{Role: RoleClient}
	Admin  = Peer{Role: RoleAdmin}
)

func (p Peer) String() string {
	if p.Role == RoleNode {
		return fmt.Sprintf("node %d", p.Node)
	}
	return p.Role.String()
}

// IsNode reports whether p is a member node.
func (p Peer) IsNode() bool { return p.Role == RoleNode }

// MayUseClient reports whether p may submit and read (the Client service).
func (p Peer) MayUseClient() bool { return p.Role == RoleClient || p.Role == RoleAdmin }

// IsAdmin reports whether p may take the operator's actions.
func (p Peer) IsAdmin() bool { return p.Role == RoleAdmin }

// uriScheme prefixes every role URI; "twopc:node:2" is an opaque URI.
const uriScheme = "twopc"

// URI is the subject alternative name that names p in its certificate.
func (p Peer) URI() *url.URL {
	if p.Role == RoleNode {
		return &url.URL{Scheme: uriScheme, Opaque: "node:" + strconv.Itoa(int(p.Node))}
	}
	return &url.URL{Scheme: uriScheme, Opaque: p.Role.String()}
}

// FileBase is the name a certificate's files take in a TLS directory:
// node-<id>, client or admin (then .crt and .key).
func (p Peer) FileBase() string {
	if p.Role == RoleNode {
		return fmt.Sprintf("node-%d", p.Node)
	}
	return p.Role.String()
}

// parseURI reads a role URI; ok is false for a URI that is not twopc's.
func parseURI(u *url.URL) (p Peer, ok bool, err error) {
	if u.Scheme != uriScheme {
		return Peer{}, false, nil
	}
	switch o := u.Opaque; {
	case o == "client":
		return Client, true, nil
	case o == "admin":
		return Admin, true, nil
	case strings.HasPrefix(o, "node:"):
		id, err := strconv.ParseInt(strings.TrimPrefix(o, "node:"), 10, 32)
		if err != nil || id < 0 {
			return Peer{}, true, fmt.Errorf("identity: bad node id in %q", u.String())
		}
		return Node(int32(id)), true, nil
	}
	return Peer{}, true, fmt.Errorf("identity: unknown role in %q", u.String())
}

// PeerOf reads the identity a certificate names. It must name exactly one:
// a certificate with two roles (or none) is refused, so no reading of it
// can be ambiguous. PeerOf does not verify the certificate: call it on a
// peer certificate that TLS has verified against the cluster's CA.
func PeerOf(cert *x509.Certificate) (Peer, error) {
	var (
		found Peer
		n     int
	)
	for _, u := range cert.URIs {
		p, ok, err := parseURI(u)
		if err != nil {
			return Peer{}, err
		}
		if ok {
			found = p
			n++
		}
	}
	switch n {
	case 0:
		return Peer{}, errors.New("identity: certificate names no twopc role (no twopc: URI)")
	case 1:
		return found, nil
	}
	return Peer{}, fmt.Errorf("identity: certificate names %d twopc roles; exactly one is allowed", n)
}

// PeerOfConn is the identity proven by a completed handshake.
func PeerOfConn(cs tls.ConnectionState) (Peer, error) {
	if !cs.HandshakeComplete || len(cs.PeerCertificates) == 0 {
		return Peer{}, errors.New("identity: no verified peer certificate")
	}
	return PeerOf(cs.PeerCertificates[0])
}
