package identity

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func mustIssue(t *testing.T, ca *CA, p Peer, hosts ...string) *Identity {
	t.Helper()
	id, err := ca.Issue(p, hosts...)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// handshake runs a TLS handshake over an in-memory pipe and returns what
// each side saw: the server's reading of the client, and each side's error.
// A server that accepts writes one byte; the client's handshake counts as
// successful once it has read it (in TLS 1.3 the server verifies the
// client's certificate after the client's Handshake has returned).
func handshake(t *testing.T, server, client *tls.Config) (Peer, error, error) {
	t.Helper()
	sc, cc := net.Pipe()
	defer cc.Close()
	type res struct {
		p   Peer
		err error
	}
	done := make(chan res, 1)
	go func() {
		defer sc.Close()
		s := tls.Server(sc, server)
		err := s.Handshake()
		var p Peer
		if err == nil {
			p, err = PeerOfConn(s.ConnectionState())
		}
		if err == nil {
			_, err = s.Write([]byte{1})
		}
		done <- res{p, err}
	}()
	cfg := client.Clone()
	cfg.ServerName = "127.0.0.1"
	c := tls.Client(cc, cfg)
	cerr := c.Handshake()
	if cerr == nil {
		var b [1]byte
		_, cerr = io.ReadFull(c, b[:])
	}
	cc.Close() // unblocks a server still writing to a client that gave up
	r := <-done
	return r.p, r.err, cerr
}

func TestRoleURIsRoundTrip(t *testing.T) {
	for _, p := range []Peer{Node(0), Node(7), Client, Admin} {
		got, ok, err := parseURI(p.URI())
		if !ok || err != nil || got != p {
			t.Errorf("%v: URI %v read back as %v (ok %v, err %v)", p, p.URI(), got, ok, err)
		}
	}
	for _, bad := range []string{"twopc:node:-1", "twopc:node:x", "twopc:root"} {
		u := Node(0).URI()
		u.Opaque = strings.TrimPrefix(bad, "twopc:")
		if _, ok, err := parseURI(u); !ok || err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestIssuedCertificatesNameTheirRole(t *testing.T) {
	ca := mustCA(t)
	for _, p := range []Peer{Node(2), Client, Admin} {
		var hosts []string
		if p.IsNode() {
			hosts = []string{"127.0.0.1", "db2.example"}
		}
		id := mustIssue(t, ca, p, hosts...)
		got, err := PeerOf(id.cert.Leaf)
		if err != nil || got != p {
			t.Errorf("%v: certificate names %v (%v)", p, got, err)
		}
	}
	if _, err := ca.Issue(Client, "127.0.0.1"); err == nil {
		t.Error("a client certificate with a host was issued")
	}
	if _, err := ca.Issue(Node(1)); err == nil {
		t.Error("a node certificate without a host was issued")
	}
}

func TestMutualHandshakeReadsTheClientsRole(t *testing.T) {
	ca := mustCA(t)
	node1 := mustIssue(t, ca, Node(1), "127.0.0.1")
	for _, p := range []Peer{Node(0), Client, Admin} {
		var hosts []string
		if p.IsNode() {
			hosts = []string{"127.0.0.1"}
		}
		dialer := mustIssue(t, ca, p, hosts...)
		got, serr, cerr := handshake(t, node1.ServerConfig(), dialer.NodeConfig(1))
		if serr != nil || cerr != nil || got != p {
			t.Errorf("%v dialling node 1: server read %v (%v), client %v", p, got, serr, cerr)
		}
	}
}

// An attack: a certificate made by another authority, even naming a valid
// role, is refused by the node.
func TestCertificateFromAnotherCARefused(t *testing.T) {
	ca, other := mustCA(t), mustCA(t)
	node1 := mustIssue(t, ca, Node(1), "127.0.0.1")
	stranger := mustIssue(t, other, Node(0), "127.0.0.1")
	// The stranger trusts the real CA, to get as far as it can.
	cfg := stranger.NodeConfig(1)
	cfg.RootCAs = ca.Pool()
	if _, serr, _ := handshake(t, node1.ServerConfig(), cfg); serr == nil {
		t.Fatal("node 1 accepted a certificate from another CA")
	}
	// And a node of the other CA is not accepted as node 1 by a dialer.
	fake1 := mustIssue(t, other, Node(1), "127.0.0.1")
	client := mustIssue(t, ca, Client)
	if _, _, cerr := handshake(t, fake1.ServerConfig(), client.ClientConfig()); cerr == nil {
		t.Fatal("a client accepted a node certificate from another CA")
	}
}

// An attack: node 2 answering where node 1 was dialled, and a client
// certificate posing as a node's server, are refused by the dialer.
func TestDialerRefusesTheWrongServer(t *testing.T) {
	ca := mustCA(t)
	node0 := mustIssue(t, ca, Node(0), "127.0.0.1")
	node2 := mustIssue(t, ca, Node(2), "127.0.0.1")
	if _, _, cerr := handshake(t, node2.ServerConfig(), node0.NodeConfig(1)); cerr == nil {
		t.Fatal("node 0 dialling node 1 accepted node 2")
	}
	client := mustIssue(t, ca, Client)
	srv := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{client.cert}, ClientAuth: tls.RequireAnyClientCert}
	if _, _, cerr := handshake(t, srv, node0.ClientConfig()); cerr == nil {
		t.Fatal("a dialer accepted a client certificate as a node")
	}
}

// Only TLS 1.3 is spoken.
func TestServerRefusesTLS12(t *testing.T) {
	ca := mustCA(t)
	node1 := mustIssue(t, ca, Node(1), "127.0.0.1")
	cfg := mustIssue(t, ca, Client).ClientConfig()
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	if _, serr, _ := handshake(t, node1.ServerConfig(), cfg); serr == nil {
		t.Fatal("TLS 1.2 accepted")
	}
}

func TestLoadRefusesAKeyOthersCanRead(t *testing.T) {
	ca := mustCA(t)
	dir := t.TempDir()
	c, k, err := ca.IssuePEM(Client, nil)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), b, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, name), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(CAFile, ca.CertPEM(), 0o644)
	write("client.crt", c, 0o644)
	write("client.key", k, 0o644)
	if _, err := Load(dir, Client); err == nil || !strings.Contains(err.Error(), "client.key") {
		t.Fatalf("a world-readable key was loaded: %v", err)
	}
	write("client.key", k, 0o600)
	if id, err := Load(dir, Client); err != nil || id.Peer != Client {
		t.Fatalf("load: %v", err)
	}
	// The files of one role do not load as another.
	write("admin.crt", c, 0o644)
	write("admin.key", k, 0o600)
	if _, err := Load(dir, Admin); err == nil {
		t.Fatal("a client certificate loaded as the admin's")
	}
}
