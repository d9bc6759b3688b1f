package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"twopc/identity"
)

func runCerts(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestWritesEveryFileWithPrivateKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	if code, _, stderr := runCerts("--dir", dir, "--nodes", "3", "--hosts", "127.0.0.1,localhost,10.0.0.3"); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want := []string{"ca.crt", "ca.key", "node-0.crt", "node-0.key", "node-1.crt", "node-1.key", "node-2.crt", "node-2.key", "client.crt", "client.key", "admin.crt", "admin.key"}
	for _, name := range want {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(name, ".key") && st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, st.Mode().Perm())
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != len(want) {
		t.Errorf("%d files written, want %d", len(entries), len(want))
	}
	// Every identity loads, names its role, and node i carries host i.
	for i, host := range []string{"127.0.0.1", "localhost", "10.0.0.3"} {
		id, err := identity.Load(dir, identity.Node(int32(i)))
		if err != nil {
			t.Fatal(err)
		}
		leaf := id.ServerConfig().Certificates[0].Leaf
		if err := leaf.VerifyHostname(host); err != nil {
			t.Errorf("node %d: %v", i, err)
		}
	}
	for _, p := range []identity.Peer{identity.Client, identity.Admin} {
		if _, err := identity.Load(dir, p); err != nil {
			t.Error(err)
		}
	}
	// The written CA can issue more.
	c, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	k, _ := os.ReadFile(filepath.Join(dir, "ca.key"))
	if _, err := identity.LoadCA(c, k); err != nil {
		t.Error(err)
	}
}

func TestOneHostForAllNodes(t *testing.T) {
	dir := t.TempDir()
	if code, _, stderr := runCerts("--dir", dir, "--nodes", "2", "--hosts", "db.example"); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	id, err := identity.Load(dir, identity.Node(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := id.ServerConfig().Certificates[0].Leaf.VerifyHostname("db.example"); err != nil {
		t.Error(err)
	}
}

func TestRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	keep := []byte("not a key")
	if err := os.WriteFile(filepath.Join(dir, "node-1.key"), keep, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCerts("--dir", dir, "--nodes", "2", "--hosts", "127.0.0.1")
	if code == 0 || !strings.Contains(stderr, "node-1.key") {
		t.Fatalf("exit %d, stderr %q: want a failure naming node-1.key", code, stderr)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "node-1.key")); !bytes.Equal(got, keep) {
		t.Error("node-1.key was overwritten")
	}
	if _, err := os.Stat(filepath.Join(dir, "ca.key")); err == nil {
		t.Error("files were written although one existed")
	}
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{},
		{"--nodes", "3", "--hosts", "h"},
		{"--dir", dir, "--hosts", "h"},
		{"--dir", dir, "--nodes", "0", "--hosts", "h"},
		{"--dir", dir, "--nodes", "3"},
		{"--dir", dir, "--nodes", "3", "--hosts", "a,b"},
		{"--dir", dir, "--nodes", "2", "--hosts", "a,"},
		{"--dir", dir, "--nodes", "2", "--hosts", "a", "extra"},
		{"--bogus"},
	} {
		code, _, stderr := runCerts(args...)
		if code != 2 || !strings.Contains(stderr, "usage:") {
			t.Errorf("%q: exit %d, stderr %q: want 2 and the usage", args, code, stderr)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a usage error wrote %d files", len(entries))
	}
}
