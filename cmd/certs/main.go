// Command certs makes a cluster's certificates: an authority (ca.crt,
// ca.key), one certificate per node naming its id and host, a client
// certificate and an admin certificate. It never overwrites a file.
//
//	go run ./cmd/certs --dir tls --nodes 4 --hosts 127.0.0.1
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"twopc/identity"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// Exit codes: 2 for a usage error, 1 for a failure making or writing files.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("certs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "directory to write the certificates to (created if missing; existing files are never overwritten)")
	nodes := fs.Int("nodes", 0, "cluster size: node-0 … node-<nodes-1> certificates are made")
	hosts := fs.String("hosts", "", "node hosts (names or IPs), comma separated: one per node in id order, or one for all")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./cmd/certs --dir DIR --nodes N --hosts H0[,H1,...]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	usage := func(msg string) int {
		fmt.Fprintln(stderr, "certs:", msg)
		fs.Usage()
		return 2
	}
	switch {
	case fs.NArg() > 0:
		return usage(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	case *dir == "":
		return usage("--dir is required")
	case *nodes < 1:
		return usage("--nodes must be at least 1")
	case *hosts == "":
		return usage("--hosts is required")
	}
	hs := strings.Split(*hosts, ",")
	for i, h := range hs {
		if hs[i] = strings.TrimSpace(h); hs[i] == "" {
			return usage(fmt.Sprintf("--hosts: entry %d is empty", i))
		}
	}
	if len(hs) != 1 && len(hs) != *nodes {
		return usage(fmt.Sprintf("--hosts gives %d hosts for %d nodes: give one per node, or one for all", len(hs), *nodes))
	}
	files, err := makeFiles(*nodes, hs)
	if err != nil {
		fmt.Fprintln(stderr, "certs:", err)
		return 1
	}
	if err := writeAll(*dir, files); err != nil {
		fmt.Fprintln(stderr, "certs:", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %d files to %s: ca.crt, ca.key (keep it offline), node-0..node-%d, client, admin (.crt/.key)\n", len(files), *dir, *nodes-1)
	return 0
}

type file struct {
	name string
	data []byte
	mode os.FileMode
}

func makeFiles(nodes int, hosts []string) ([]file, error) {
	ca, err := identity.NewCA("twopc cluster CA")
	if err != nil {
		return nil, err
	}
	caKey, err := ca.KeyPEM()
	if err != nil {
		return nil, err
	}
	files := []file{{identity.CAFile, ca.CertPEM(), 0o644}, {identity.CAKeyFile, caKey, 0o600}}
	add := func(p identity.Peer, hosts []string) error {
		c, k, err := ca.IssuePEM(p, hosts)
		if err != nil {
			return err
		}
		files = append(files, file{p.FileBase() + ".crt", c, 0o644}, file{p.FileBase() + ".key", k, 0o600})
		return nil
	}
	for i := range nodes {
		h := hosts[0]
		if len(hosts) > 1 {
			h = hosts[i]
		}
		if err := add(identity.Node(int32(i)), []string{h}); err != nil {
			return nil, err
		}
	}
	if err := add(identity.Client, nil); err != nil {
		return nil, err
	}
	if err := add(identity.Admin, nil); err != nil {
		return nil, err
	}
	return files, nil
}

// writeAll refuses before writing anything if any file exists, so a second
// run cannot leave a directory with two authorities' certificates mixed;
// each file is still created exclusively, in case one appears meanwhile.
func writeAll(dir string, files []file) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s exists: refusing to overwrite it (use another --dir, or remove the old files first)", p)
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		fh, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
		if err != nil {
			if errors.Is(err, os.ErrExist) {
				return fmt.Errorf("%s exists: refusing to overwrite it", p)
			}
			return err
		}
		_, err = fh.Write(f.data)
		if err == nil {
			err = fh.Sync()
		}
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Chmod(p, f.mode) // the umask may have taken bits away; never added any
		}
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}
