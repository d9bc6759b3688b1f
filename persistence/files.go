package persistence

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/hashicorp/go-hclog"
)

// A node's directory is private to the node's own user: what it holds (keys,
// values, who voted what) is nobody else's business, and whoever can write
// there can change what the node recovers. It holds only regular files: a
// symbolic link would make the node write (and the torn-tail trim truncate)
// a file somewhere else, and a FIFO or device would hang or corrupt replay.

// DirPerm and FilePerm are the permissions of a node's data directory and
// of every file the node keeps in it.
const (
	DirPerm  fs.FileMode = 0o700
	FilePerm fs.FileMode = 0o600
)

// PrepareDir makes dir ready to hold a node's data, or says why it cannot.
// It creates dir (DirPerm, parents too) if it is missing; refuses it if it
// is a symbolic link or not a directory; refuses it if any entry in it is
// not a regular file (a symbolic link, a FIFO, a directory, a device...),
// naming the entry; and tightens wider permissions, on dir to DirPerm and
// on its files to FilePerm, logging what it changed in one warning. It
// changes nothing else, so calling it again finds nothing to do.
//
// Tightening rather than refusing keeps data directories made by earlier
// versions (0755 and 0644) usable without an operator's step; the warning
// says that others could read them until now.
func PrepareDir(dir string, logger hclog.Logger) error {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if err := os.MkdirAll(dir, DirPerm); err != nil {
		return fmt.Errorf("persistence: %w", err)
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("persistence: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("persistence: data directory %s is %s, not a directory: refusing to use it", dir, describe(dir, st.Mode()))
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("persistence: %w", err)
	}
	// Every entry is checked before anything is changed: a refused
	// directory is left as found.
	var loose []string
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if !e.Type().IsRegular() {
			return fmt.Errorf("persistence: %s is %s, not a regular file: a data directory holds only regular files (move it away)", p, describe(p, e.Type()))
		}
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("persistence: %w", err)
		}
		if info.Mode().Perm()&^FilePerm != 0 {
			loose = append(loose, e.Name())
		}
	}
	var tightened []string
	if st.Mode().Perm()&^DirPerm != 0 {
		if err := os.Chmod(dir, DirPerm); err != nil {
			return fmt.Errorf("persistence: tightening permissions of %s: %w", dir, err)
		}
		tightened = append(tightened, fmt.Sprintf(". (%v)", st.Mode().Perm()))
	}
	for _, name := range loose {
		was, err := chmodFile(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		tightened = append(tightened, fmt.Sprintf("%s (%v)", name, was))
	}
	if len(tightened) > 0 {
		logger.Warn("data directory was open to other users: permissions tightened to 0700 (directory) and 0600 (files)",
			"dir", dir, "changed", tightened)
	}
	return nil
}

// chmodFile sets path to FilePerm through a descriptor opened without
// following a link, so a link swapped in meanwhile changes nothing outside.
func chmodFile(path string) (fs.FileMode, error) {
	f, err := OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err == nil {
		err = f.Chmod(FilePerm)
	}
	if err != nil {
		return 0, fmt.Errorf("persistence: tightening permissions of %s: %w", path, err)
	}
	return st.Mode().Perm(), nil
}

// OpenFile opens a file in a data directory like os.OpenFile, but never
// through a symbolic link (O_NOFOLLOW), never waiting on a FIFO
// (O_NONBLOCK, which changes nothing for a regular file), and only if what
// it opened is a regular file: anything else is refused with an error
// naming path. A file it creates gets perm (use FilePerm).
func OpenFile(path string, flag int, perm fs.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, perm)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			// What O_NOFOLLOW answers for a link: say so in plain words.
			return nil, fmt.Errorf("persistence: %s is %s, not a regular file: refusing to follow it", path, describe(path, fs.ModeSymlink))
		}
		return nil, fmt.Errorf("persistence: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("persistence: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("persistence: %s is %s, not a regular file: refusing to use it", path, describe(path, st.Mode()))
	}
	return f, nil
}

// ReadFile is os.ReadFile through OpenFile.
func ReadFile(path string) ([]byte, error) {
	f, err := OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("persistence: %s: %w", path, err)
	}
	return data, nil
}

// describe names what kind of file mode is, for an error message; for a
// symbolic link it adds where the link points.
func describe(path string, mode fs.FileMode) string {
	switch t := mode.Type(); {
	case t&fs.ModeSymlink != 0:
		if to, err := os.Readlink(path); err == nil {
			return fmt.Sprintf("a symbolic link (to %s)", to)
		}
		return "a symbolic link"
	case t&fs.ModeDir != 0:
		return "a directory"
	case t&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case t&fs.ModeSocket != 0:
		return "a socket"
	case t&fs.ModeDevice != 0:
		return "a device"
	case t == 0:
		return "a regular file"
	}
	return fmt.Sprintf("a special file (%v)", mode.Type())
}
